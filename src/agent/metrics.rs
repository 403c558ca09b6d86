//! `GET /metrics`: the Prometheus text format (version 0.0.4), with
//! node_exporter's names where it has one, so existing dashboards and
//! alerts work, and `fleet_agent_*` for what only the agent knows.

use std::fmt::Write as _;

use super::collect::{Sample, procfs::USER_HZ};
use super::lifecycle::Lifecycle;
use crate::model::state::{RegistrationState, TokenState};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the metrics page shows besides the sample.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub version: &'a str,
    pub hostname: &'a str,
    pub agent_start_secs: i64,
}

/// Renders the whole page at `now_ms`.
#[must_use]
pub fn render(sample: &Sample, life: &Lifecycle, who: Identity<'_>, now_ms: i64) -> String {
    let mut out = String::with_capacity(4096 + sample.cpu_times.len() * 700);
    let mut m = Page(&mut out);
    node_families(&mut m, sample);
    fleet_families(&mut m, life, who, now_ms);
    m.gauge(
        "fleet_agent_sample_timestamp_seconds",
        "When the agent last read /proc, in unixtime.",
        sample.taken_at_ms as f64 / 1000.0,
    );
    m.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        sample.agent_rss_bytes as f64,
    );
    m.gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        who.agent_start_secs as f64,
    );
    out
}

/// The families node_exporter has, with its names and help texts.
fn node_families(m: &mut Page<'_>, sample: &Sample) {
    m.family(
        "node_cpu_seconds_total",
        "counter",
        "Seconds the CPUs spent in each mode.",
    );
    for (cpu, times) in &sample.cpu_times {
        for (mode, ticks) in times.modes() {
            m.sample(
                "node_cpu_seconds_total",
                &[("cpu", &cpu.to_string()), ("mode", mode)],
                ticks as f64 / USER_HZ,
            );
        }
    }
    for (name, value) in [
        ("node_load1", sample.cpu.load1),
        ("node_load5", sample.cpu.load5),
        ("node_load15", sample.cpu.load15),
    ] {
        m.family(name, "gauge", &format!("{}m load average.", &name[9..]));
        m.sample(name, &[], value);
    }
    for (field, value) in [
        ("MemTotal", sample.memory.total),
        ("MemFree", sample.memory.free),
        ("MemAvailable", sample.memory.available),
        ("SwapTotal", sample.memory.swap_total),
        ("SwapFree", sample.memory.swap_free),
    ] {
        let name = format!("node_memory_{field}_bytes");
        m.family(
            &name,
            "gauge",
            &format!("Memory information field {field}_bytes."),
        );
        m.sample(&name, &[], value as f64);
    }
    if let Some(boot) = sample.boot_time {
        m.gauge(
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            boot as f64,
        );
    }
    m.gauge(
        "node_time_seconds",
        "System time in seconds since epoch (1970).",
        sample.taken_at_ms as f64 / 1000.0,
    );
}

/// What only the agent knows: its registration and credentials.
fn fleet_families(m: &mut Page<'_>, life: &Lifecycle, who: Identity<'_>, now_ms: i64) {
    m.family(
        "fleet_agent_info",
        "gauge",
        "The fleetctl agent's version and host name; always 1.",
    );
    m.sample(
        "fleet_agent_info",
        &[("version", who.version), ("hostname", who.hostname)],
        1.0,
    );
    let registration = life.registration_state(now_ms);
    m.family(
        "fleet_agent_registration_state",
        "gauge",
        "The agent's registration with the control plane: 1 for the current state.",
    );
    for state in RegistrationState::ALL {
        m.sample(
            "fleet_agent_registration_state",
            &[("state", state.as_str())],
            f64::from(u8::from(*state == registration)),
        );
    }
    let token = life.token_state(now_ms);
    m.family(
        "fleet_agent_token_state",
        "gauge",
        "The agent's identity token: 1 for the current state.",
    );
    for state in TokenState::ALL {
        m.sample(
            "fleet_agent_token_state",
            &[("state", state.as_str())],
            f64::from(u8::from(*state == token)),
        );
    }
    if let Some(id) = life.identity() {
        m.gauge(
            "fleet_agent_token_expiry_timestamp_seconds",
            "When the agent's identity token expires, in unixtime.",
            id.expires_at as f64 / 1000.0,
        );
    }
    if let Some(cert) = life.cert() {
        m.gauge(
            "fleet_agent_certificate_expiry_timestamp_seconds",
            "When the agent's TLS certificate expires, in unixtime.",
            cert.expires_at as f64 / 1000.0,
        );
    }
    let status = life.registration_status(now_ms);
    m.gauge(
        "fleet_agent_consecutive_failures",
        "Calls to the control plane that failed in a row.",
        f64::from(status.consecutive_failures),
    );
}

struct Page<'a>(&'a mut String);

impl Page<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"");
                escape_label(self.0, val);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::collect::{Collector, ProcTexts};
    use std::time::Duration;

    fn page() -> String {
        let texts = ProcTexts {
            stat: "cpu 300 0 100 600\ncpu0 150 0 50 300\ncpu1 150 0 50 300\nbtime 1700000000\n"
                .into(),
            loadavg: "0.5 0.25 0.125 1/1 1\n".into(),
            meminfo: "MemTotal: 1024 kB\nMemFree: 256 kB\nMemAvailable: 512 kB\n".into(),
            uptime: "10.0 1.0\n".into(),
            self_status: "VmRSS: 4 kB\n".into(),
        };
        let sample = Collector::new(Duration::from_secs(2)).sample(&texts, 1_700_000_100_000);
        let who = Identity {
            version: "0.1.0",
            hostname: "we\"b1",
            agent_start_secs: 1_700_000_000,
        };
        render(
            &sample,
            &Lifecycle::new("https://ctl"),
            who,
            1_700_000_100_000,
        )
    }

    #[test]
    fn node_exporter_names_and_values() {
        let page = page();
        for line in [
            "node_cpu_seconds_total{cpu=\"1\",mode=\"user\"} 1.5",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 3",
            "node_load5 0.25",
            "node_memory_MemTotal_bytes 1048576",
            "node_memory_MemAvailable_bytes 524288",
            "node_memory_SwapTotal_bytes 0",
            "node_boot_time_seconds 1700000000",
            "node_time_seconds 1700000100",
            "fleet_agent_info{version=\"0.1.0\",hostname=\"we\\\"b1\"} 1",
            "fleet_agent_registration_state{state=\"pending\"} 1",
            "fleet_agent_registration_state{state=\"registered\"} 0",
            "fleet_agent_token_state{state=\"none\"} 1",
            "process_resident_memory_bytes 4096",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "missing {line:?} in\n{page}"
            );
        }
        // Not enrolled: no expiry to show.
        assert!(!page.contains("fleet_agent_token_expiry"));
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let page = page();
        let mut declared = std::collections::HashSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} has no TYPE line");
            }
        }
    }
}
