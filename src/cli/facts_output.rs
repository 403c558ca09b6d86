//! The columns fingerprint facts add to a table or CSV, shared by
//! `fleetctl fingerprint` and `fleetctl scan --ssh` so both read alike.
//! Facts are what hosts say of themselves: every cell is escaped.

use crate::model::{Fingerprint, text};

/// Table heading of [`table_cells`].
#[must_use]
pub fn table_header() -> String {
    format!(
        "{:<18} {:<28} {:<8} {:>4} {:>9}",
        "STATUS", "OS", "ARCH", "CPUS", "MEMORY"
    )
}

/// Status, OS, arch, CPUs and memory, in fixed-width columns; all `-`
/// when there is no `r` (a host that was not fingerprinted).
#[must_use]
pub fn table_cells(r: Option<&Fingerprint>) -> String {
    let facts = r.and_then(|r| r.facts.clone()).unwrap_or_default();
    let os = facts
        .os_pretty
        .or(facts.os_id)
        .unwrap_or_else(|| "-".into());
    let mem = facts.mem_total_bytes.map_or_else(
        || "-".into(),
        |b| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
    );
    format!(
        "{:<18} {:<28} {:<8} {:>4} {:>9}",
        r.map_or("-", status),
        text::escape(&os).chars().take(28).collect::<String>(),
        text::escape(facts.arch.as_deref().unwrap_or("-")),
        facts
            .cpu_count
            .map_or_else(|| "-".into(), |c| c.to_string()),
        mem,
    )
}

/// `ok`, or the failure class as tables show it.
#[must_use]
pub fn status(r: &Fingerprint) -> &'static str {
    r.failure.map_or("ok", |f| f.as_str())
}

/// CSV column names of [`csv_cells`].
pub const CSV_COLUMNS: [&str; 9] = [
    "ssh_status",
    "hostname",
    "os",
    "kernel",
    "arch",
    "cpus",
    "mem_total_bytes",
    "host_key",
    "ssh_error",
];

/// The [`CSV_COLUMNS`] of `r`, empty where unknown (or when there is no `r`).
#[must_use]
pub fn csv_cells(r: Option<&Fingerprint>) -> Vec<String> {
    let Some(r) = r else {
        return vec![String::new(); CSV_COLUMNS.len()];
    };
    let facts = r.facts.clone().unwrap_or_default();
    let cells = vec![
        status(r).to_string(),
        facts.hostname.unwrap_or_default(),
        facts.os_id.unwrap_or_default(),
        facts.kernel.unwrap_or_default(),
        facts.arch.unwrap_or_default(),
        facts.cpu_count.map(|c| c.to_string()).unwrap_or_default(),
        facts
            .mem_total_bytes
            .map(|b| b.to_string())
            .unwrap_or_default(),
        r.host_key.clone().unwrap_or_default(),
        r.error.clone().unwrap_or_default(),
    ];
    cells
        .into_iter()
        .map(|c| text::escape(&c).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureKind, HostFacts};

    fn sample() -> Fingerprint {
        Fingerprint {
            host: "db1".into(),
            address: "10.0.0.5".into(),
            port: 22,
            host_key: Some("SHA256:k".into()),
            facts: Some(HostFacts {
                os_pretty: Some("Debian GNU/Linux 12 (bookworm)".into()),
                os_id: Some("debian".into()),
                arch: Some("x86_64".into()),
                cpu_count: Some(4),
                mem_total_bytes: Some(8 << 30),
                ..HostFacts::default()
            }),
            failure: None,
            error: None,
            gathered_at: 0,
        }
    }

    #[test]
    fn table_cells_line_up_with_the_header() {
        let row = table_cells(Some(&sample()));
        assert_eq!(
            row,
            "ok                 Debian GNU/Linux 12 (bookwor x86_64      4   8.0 GiB"
        );
        assert_eq!(row.len(), table_header().len());
        let failed = Fingerprint {
            facts: None,
            failure: Some(FailureKind::HostKeyChanged),
            ..sample()
        };
        assert!(table_cells(Some(&failed)).starts_with("host key CHANGED   -  "));
        assert_eq!(table_cells(None).len(), table_header().len());
        assert!(table_cells(None).starts_with("-   "));
    }

    #[test]
    fn csv_cells_match_the_columns_and_are_empty_when_unknown() {
        let cells = csv_cells(Some(&sample()));
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        assert_eq!(cells[0], "ok");
        assert_eq!(cells[2], "debian");
        assert_eq!(cells[6], (8u64 << 30).to_string());
        assert!(csv_cells(None).iter().all(String::is_empty));
    }

    #[test]
    fn what_a_host_says_of_itself_is_escaped() {
        let hostile = "Evil\x1b]0;PWNED\x07\x1b[2J";
        let r = Fingerprint {
            facts: Some(HostFacts {
                os_pretty: Some(hostile.into()),
                hostname: Some(hostile.into()),
                kernel: Some(hostile.into()),
                arch: Some("x\x1b[2m".into()),
                ..HostFacts::default()
            }),
            error: Some(format!("db1: `sh` exited with status 1: {hostile}")),
            ..sample()
        };
        let row = table_cells(Some(&r));
        assert!(!row.contains(['\x1b', '\x07']), "{row:?}");
        assert!(row.contains("Evil\\x1b]0;PWNED\\x07"), "{row}");
        for cell in csv_cells(Some(&r)) {
            assert!(!cell.contains(['\x1b', '\x07']), "{cell:?}");
        }
    }
}
