//! Scan results as a table, JSON, JSON lines or CSV.
//!
//! Every format but JSON streams: a host is written the moment its outcome is
//! known (with `--ssh`, once it is fingerprinted too). JSON is one array, so
//! it is written at the end, in target order.

use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use super::facts_output;
use crate::model::{Fingerprint, HostScan, text};
use crate::scan::ScanSummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array, written when the scan ends.
    Json,
    /// One JSON object per line, as hosts are found.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

pub struct ScanWriter<W: Write> {
    format: Format,
    out: W,
    addr_width: usize,
    show_names: bool,
    /// Whether hosts are fingerprinted (`--ssh`): the facts columns are shown.
    show_facts: bool,
    /// Held for JSON, which is written whole at the end.
    held: Vec<(HostScan, Option<Fingerprint>)>,
    target_order: Vec<IpAddr>,
}

/// A host as JSON and JSON lines show it: the scan's fields, and with
/// `--ssh` what fingerprinting it found.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    host: &'a HostScan,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a Fingerprint>,
}

/// How fingerprinting went, for the table's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FingerprintCounts {
    pub ok: usize,
    pub failed: usize,
}

const CSV_HEADER: &str = "address,name,reach,via,rtt_ms,open_ports,ssh_banner";

/// Writes `value` as JSON and a line break: one line, or `pretty`. Every
/// CLI JSON writer goes through here, so what serde_json leaves raw (DEL,
/// C1 controls, bidirectional overrides) is escaped too
/// ([`text::escape_json`]).
pub fn write_json<T: Serialize + ?Sized>(
    out: &mut impl Write,
    value: &T,
    pretty: bool,
) -> io::Result<()> {
    let json = if pretty {
        serde_json::to_string_pretty(value)?
    } else {
        serde_json::to_string(value)?
    };
    writeln!(out, "{}", text::escape_json(&json))
}

impl<W: Write> ScanWriter<W> {
    pub fn new(
        format: Format,
        out: W,
        targets: &[IpAddr],
        show_names: bool,
        show_facts: bool,
    ) -> Self {
        let addr_width = if targets.iter().any(IpAddr::is_ipv6) {
            targets
                .iter()
                .map(|a| a.to_string().len())
                .max()
                .unwrap_or(15)
        } else {
            15
        };
        Self {
            format,
            out,
            addr_width,
            show_names,
            show_facts,
            held: Vec::new(),
            target_order: if format == Format::Json {
                targets.to_vec()
            } else {
                Vec::new()
            },
        }
    }

    pub fn header(&mut self) -> io::Result<()> {
        match self.format {
            Format::Table => {
                let name = if self.show_names {
                    format!("{:<30} ", "NAME")
                } else {
                    String::new()
                };
                let facts = if self.show_facts {
                    format!("{} ", facts_output::table_header())
                } else {
                    String::new()
                };
                writeln!(
                    self.out,
                    "{:<w$} {name}{:<7} {:<7} {:>9}  {:<10} {facts}SSH",
                    "ADDRESS",
                    "STATE",
                    "VIA",
                    "RTT",
                    "OPEN",
                    w = self.addr_width
                )?;
            }
            Format::Csv if self.show_facts => writeln!(
                self.out,
                "{CSV_HEADER},{}",
                facts_output::CSV_COLUMNS.join(",")
            )?,
            Format::Csv => writeln!(self.out, "{CSV_HEADER}")?,
            Format::Json | Format::Jsonl => {}
        }
        self.out.flush()
    }

    /// Writes one host, with what fingerprinting it found (`--ssh`).
    pub fn host(&mut self, host: &HostScan, fingerprint: Option<&Fingerprint>) -> io::Result<()> {
        match self.format {
            Format::Table => {
                let name = if self.show_names {
                    format!("{:<30} ", text::escape(host.name.as_deref().unwrap_or("-")))
                } else {
                    String::new()
                };
                let facts = if self.show_facts {
                    format!("{} ", facts_output::table_cells(fingerprint))
                } else {
                    String::new()
                };
                let line = format!(
                    "{:<w$} {name}{:<7} {:<7} {:>9}  {:<10} {facts}{}",
                    host.addr,
                    host.reach,
                    host.via.map_or_else(|| "-".to_string(), |v| v.to_string()),
                    host.rtt_ms
                        .map_or_else(|| "-".to_string(), |ms| format!("{ms:.2} ms")),
                    non_empty(&ports(&host.open_ports)),
                    text::escape(host.ssh_banner.as_deref().unwrap_or("")),
                    w = self.addr_width
                );
                writeln!(self.out, "{}", line.trim_end())
            }
            Format::Jsonl => write_json(&mut self.out, &Row { host, fingerprint }, false),
            Format::Csv => {
                let mut fields = vec![
                    host.addr.to_string(),
                    host.name.clone().unwrap_or_default(),
                    host.reach.to_string(),
                    host.via.map(|v| v.to_string()).unwrap_or_default(),
                    host.rtt_ms.map(|ms| format!("{ms:.3}")).unwrap_or_default(),
                    ports(&host.open_ports),
                    host.ssh_banner.clone().unwrap_or_default(),
                ];
                if self.show_facts {
                    fields.extend(facts_output::csv_cells(fingerprint));
                }
                let mut csv = csv::Writer::from_writer(&mut self.out);
                csv.write_record(fields.iter().map(|f| text::escape(f).into_owned()))?;
                csv.flush()
            }
            Format::Json => {
                self.held.push((host.clone(), fingerprint.cloned()));
                Ok(())
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Ends the output; `counts` says how fingerprinting went (`--ssh`).
    pub fn finish(
        &mut self,
        summary: &ScanSummary,
        counts: Option<FingerprintCounts>,
    ) -> io::Result<()> {
        match self.format {
            Format::Json => {
                let position: std::collections::HashMap<IpAddr, usize> = self
                    .target_order
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (*a, i))
                    .collect();
                self.held
                    .sort_by_key(|(h, _)| position.get(&h.addr).copied());
                let rows: Vec<Row<'_>> = self
                    .held
                    .iter()
                    .map(|(host, fingerprint)| Row {
                        host,
                        fingerprint: fingerprint.as_ref(),
                    })
                    .collect();
                write_json(&mut self.out, &rows, true)?;
            }
            Format::Table => {
                let interrupted = if summary.interrupted {
                    format!(
                        ", interrupted with {} not probed to the end",
                        summary.unknown
                    )
                } else {
                    String::new()
                };
                writeln!(
                    self.out,
                    "# {} addresses: {} alive, {} silent{interrupted} ({}, {:.2} s)",
                    summary.total,
                    summary.alive,
                    summary.silent,
                    summary.method,
                    summary.elapsed.as_secs_f64()
                )?;
                if let Some(c) = counts {
                    writeln!(
                        self.out,
                        "# {} fingerprinted over SSH: {} ok, {} failed",
                        c.ok + c.failed,
                        c.ok,
                        c.failed
                    )?;
                }
            }
            Format::Jsonl | Format::Csv => {}
        }
        self.out.flush()
    }
}

fn ports(ports: &[u16]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn non_empty(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reach, Via};
    use std::time::Duration;

    fn sample() -> (Vec<IpAddr>, Vec<HostScan>, ScanSummary) {
        let targets: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
        let mut up = HostScan::new(targets[0], Reach::Alive);
        up.via = Some(Via::Tcp(22));
        up.rtt_ms = Some(0.25);
        up.open_ports = vec![22];
        up.ssh_banner = Some("SSH-2.0-OpenSSH_9.2p1, \"quoted\"".into());
        let down = HostScan::new(targets[1], Reach::Silent);
        let summary = ScanSummary {
            method: "tcp",
            total: 2,
            alive: 1,
            silent: 1,
            unknown: 0,
            elapsed: Duration::from_millis(1200),
            interrupted: false,
        };
        (targets, vec![down, up], summary)
    }

    fn render(format: Format) -> String {
        let (targets, hosts, summary) = sample();
        let mut buf = Vec::new();
        let mut w = ScanWriter::new(format, &mut buf, &targets, false, false);
        w.header().unwrap();
        for h in &hosts {
            w.host(h, None).unwrap();
        }
        w.finish(&summary, None).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn table_is_aligned_with_a_summary() {
        assert_eq!(
            render(Format::Table),
            "ADDRESS         STATE   VIA           RTT  OPEN       SSH\n\
             127.0.0.2       silent  -               -  -\n\
             127.0.0.1       alive   tcp:22    0.25 ms  22         SSH-2.0-OpenSSH_9.2p1, \"quoted\"\n\
             # 2 addresses: 1 alive, 1 silent (tcp, 1.20 s)\n"
        );
    }

    fn render_with_facts(format: Format) -> String {
        let (targets, hosts, summary) = sample();
        let fingerprint = Fingerprint {
            host: "127.0.0.1".into(),
            address: "127.0.0.1".into(),
            port: 22,
            host_key: Some("SHA256:k".into()),
            facts: Some(crate::model::HostFacts {
                os_id: Some("debian".into()),
                arch: Some("x86_64".into()),
                ..crate::model::HostFacts::default()
            }),
            failure: None,
            error: None,
            gathered_at: 7,
        };
        let mut buf = Vec::new();
        let mut w = ScanWriter::new(format, &mut buf, &targets, false, true);
        w.header().unwrap();
        w.host(&hosts[0], None).unwrap();
        w.host(&hosts[1], Some(&fingerprint)).unwrap();
        let counts = FingerprintCounts { ok: 1, failed: 0 };
        w.finish(&summary, Some(counts)).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn facts_show_in_every_format() {
        let table = render_with_facts(Format::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("STATUS") && lines[0].contains("OS"),
            "{table}"
        );
        assert!(
            lines[2].contains(" ok ") && lines[2].contains("debian"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("\"quoted\""),
            "banner still last: {table}"
        );
        assert!(table.contains("# 1 fingerprinted over SSH: 1 ok, 0 failed"));

        let json: serde_json::Value =
            serde_json::from_str(&render_with_facts(Format::Json)).unwrap();
        assert_eq!(json[0]["fingerprint"]["facts"]["os_id"], "debian");
        assert!(
            json[1].get("fingerprint").is_none(),
            "silent host: no facts"
        );
        let jsonl = render_with_facts(Format::Jsonl);
        let second: serde_json::Value =
            serde_json::from_str(jsonl.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["addr"], "127.0.0.1");
        assert_eq!(second["fingerprint"]["host_key"], "SHA256:k");

        let csv = render_with_facts(Format::Csv);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let os = headers.iter().position(|h| h == "os").unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[1][os], "debian");
        assert_eq!(&rows[0][os], "");
    }

    #[test]
    fn json_is_one_array_in_target_order() {
        let parsed: Vec<HostScan> = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].addr.to_string(), "127.0.0.1");
        assert_eq!(parsed[0].via, Some(Via::Tcp(22)));
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let text = render(Format::Csv);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader
                .headers()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
                .join(","),
            CSV_HEADER
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[1][6], "SSH-2.0-OpenSSH_9.2p1, \"quoted\"");
        assert_eq!(&rows[0][2], "silent");
    }

    #[test]
    fn what_hosts_send_never_reaches_a_terminal_raw() {
        let (targets, _, summary) = sample();
        let mut host = HostScan::new(targets[0], crate::model::Reach::Alive);
        host.ssh_banner = Some("SSH-2.0-x\x1b]0;PWNED\x07\u{9b}2J\u{202e}".into());
        host.name = Some("ptr\x1b[2J.example".into());
        let fingerprint = Fingerprint {
            host: "127.0.0.1".into(),
            address: "127.0.0.1".into(),
            port: 22,
            host_key: None,
            facts: Some(crate::model::HostFacts {
                os_pretty: Some("Evil\x1b[2J".into()),
                ..crate::model::HostFacts::default()
            }),
            failure: None,
            error: None,
            gathered_at: 7,
        };
        for format in [Format::Table, Format::Csv, Format::Json, Format::Jsonl] {
            let mut buf = Vec::new();
            let mut w = ScanWriter::new(format, &mut buf, &targets, true, true);
            w.header().unwrap();
            w.host(&host, Some(&fingerprint)).unwrap();
            w.finish(&summary, None).unwrap();
            let text = String::from_utf8(buf).unwrap();
            assert!(
                !text.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']),
                "{format:?}: {text:?}"
            );
            assert!(text.contains("PWNED"), "{format:?}: shown, escaped: {text}");
        }
    }
}
