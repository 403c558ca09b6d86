//! Scan results as a table, JSON, JSON lines or CSV.
//!
//! Every format but JSON streams: a host is written the moment its outcome is
//! known. JSON is one array, so it is written at the end, in target order.

use std::io::{self, Write};
use std::net::IpAddr;

use crate::model::HostScan;
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
    /// Held for JSON, which is written whole at the end.
    held: Vec<HostScan>,
    target_order: Vec<IpAddr>,
}

const CSV_HEADER: &str = "address,name,reach,via,rtt_ms,open_ports,ssh_banner";

impl<W: Write> ScanWriter<W> {
    pub fn new(format: Format, out: W, targets: &[IpAddr], show_names: bool) -> Self {
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
                writeln!(
                    self.out,
                    "{:<w$} {name}{:<7} {:<7} {:>9}  {:<10} SSH",
                    "ADDRESS",
                    "STATE",
                    "VIA",
                    "RTT",
                    "OPEN",
                    w = self.addr_width
                )?;
            }
            Format::Csv => writeln!(self.out, "{CSV_HEADER}")?,
            Format::Json | Format::Jsonl => {}
        }
        self.out.flush()
    }

    pub fn host(&mut self, host: &HostScan) -> io::Result<()> {
        match self.format {
            Format::Table => {
                let name = if self.show_names {
                    format!("{:<30} ", host.name.as_deref().unwrap_or("-"))
                } else {
                    String::new()
                };
                let line = format!(
                    "{:<w$} {name}{:<7} {:<7} {:>9}  {:<10} {}",
                    host.addr,
                    host.reach,
                    host.via.map_or_else(|| "-".to_string(), |v| v.to_string()),
                    host.rtt_ms
                        .map_or_else(|| "-".to_string(), |ms| format!("{ms:.2} ms")),
                    non_empty(&ports(&host.open_ports)),
                    host.ssh_banner.as_deref().unwrap_or(""),
                    w = self.addr_width
                );
                writeln!(self.out, "{}", line.trim_end())
            }
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, host)?;
                writeln!(self.out)
            }
            Format::Csv => {
                let fields = [
                    host.addr.to_string(),
                    host.name.clone().unwrap_or_default(),
                    host.reach.to_string(),
                    host.via.map(|v| v.to_string()).unwrap_or_default(),
                    host.rtt_ms.map(|ms| format!("{ms:.3}")).unwrap_or_default(),
                    ports(&host.open_ports),
                    host.ssh_banner.clone().unwrap_or_default(),
                ];
                let mut csv = csv::Writer::from_writer(&mut self.out);
                csv.write_record(&fields)?;
                csv.flush()
            }
            Format::Json => {
                self.held.push(host.clone());
                Ok(())
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn finish(&mut self, summary: &ScanSummary) -> io::Result<()> {
        match self.format {
            Format::Json => {
                let position: std::collections::HashMap<IpAddr, usize> = self
                    .target_order
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (*a, i))
                    .collect();
                self.held.sort_by_key(|h| position.get(&h.addr).copied());
                serde_json::to_writer_pretty(&mut self.out, &self.held)?;
                writeln!(self.out)?;
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
        let mut w = ScanWriter::new(format, &mut buf, &targets, false);
        w.header().unwrap();
        for h in &hosts {
            w.host(h).unwrap();
        }
        w.finish(&summary).unwrap();
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
}
