//! The fleet's stats from Prometheus instead of from every agent: a few
//! PromQL queries per interval, whatever the fleet's size.
//!
//! ```text
//!  poll tick ── 3 instant queries ──▶ per agent: CPU %, memory, load,
//!               (CPU; gauges; states)   registration, token, up ──▶ actor
//!  first answer ── 1 range query ──▶ CPU and memory over the history window
//! ```
//! Series are matched to hosts by their `instance` label, which the
//! control plane's service discovery sets to the agent's first vouched
//! address and stats port (where the console would read it). The CPU
//! figure is the agent's own definition (busy = all modes but idle and
//! iowait), over the last two scrapes. Per-core figures, certificate and
//! renewal details are not queried: the host detail reads its agent.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::model::stats::{
    AgentStats, CertificateStatus, CpuStats, MemoryStats, RegistrationStatus, SampleInfo,
    TokenStatus,
};
use crate::model::{RegistrationState, TokenState};

/// How the console logs in to Prometheus.
#[derive(Clone, PartialEq, Eq)]
pub enum PromAuth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

impl fmt::Debug for PromAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Bearer(_) => "Bearer(***)",
            Self::Basic { .. } => "Basic(***)",
        })
    }
}

/// Where the fleet's stats come from (`engine.stats_source`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StatsSource {
    /// Every agent's `/v1/stats`, read by the console.
    #[default]
    Agents,
    /// PromQL to a Prometheus that scrapes the agents.
    Prometheus(PromSource),
}

/// A Prometheus (or Thanos, Mimir) and how to ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromSource {
    /// Base URL; `/api/v1/...` is added to it.
    pub url: String,
    pub auth: PromAuth,
    /// The CA its certificate chains to (PEM); the system's roots without.
    pub ca_pem: Option<String>,
    /// Label matchers for the agents' series, without braces: `job="fleet"`.
    pub selector: String,
}

/// Why a query round failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus refused the query (HTTP {status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("Prometheus answered something unexpected: {0}")]
    BadResponse(String),
}

/// One agent as Prometheus last saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromAgent {
    /// `up` for its scrape target: 1 when the last scrape worked.
    pub up: Option<bool>,
    pub cpu_pct: Option<f64>,
    pub mem_total: Option<f64>,
    pub mem_available: Option<f64>,
    pub load: [Option<f64>; 3],
    pub registration: Option<RegistrationState>,
    pub token: Option<TokenState>,
    pub token_expires_at: Option<i64>,
    pub version: Option<String>,
    pub hostname: Option<String>,
    /// When the samples were taken (Unix ms): the newest of them.
    pub at_ms: i64,
}

/// A CPU and memory reading from the history query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromPoint {
    /// Unix seconds.
    pub at: f64,
    pub cpu_pct: Option<f64>,
    pub mem_pct: Option<f64>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: HashMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Asks one Prometheus.
#[derive(Debug, Clone)]
pub struct PromClient {
    http: reqwest::Client,
    source: PromSource,
    /// The series queries, with the selector filled in.
    cpu: String,
    gauges: String,
    states: String,
    history: String,
}

impl PromClient {
    /// The client for `source`: its CA the only root when one is named;
    /// `timeout` per query.
    pub fn new(source: PromSource, timeout: Duration) -> Result<Self, PromError> {
        // The one HTTP client built outside `pki::tls`: Prometheus is not
        // fleetctl's own server (no fleet CA, maybe plain http on loopback).
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("fleetctl/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &source.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes()).map_err(|e| {
                PromError::BadResponse(format!("engine.prometheus.ca_file is not PEM: {e}"))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| PromError::BadResponse(format!("cannot build the client: {e}")))?;
        let s = &source.selector;
        let sep = if s.is_empty() { "" } else { "," };
        let cpu = format!(
            "100 * (1 - sum by (instance) (irate(node_cpu_seconds_total{{{s}{sep}mode=~\"idle|iowait\"}}[1m])) \
             / sum by (instance) (irate(node_cpu_seconds_total{{{s}}}[1m])))"
        );
        let gauges = format!(
            "{{{s}{sep}__name__=~\"up|node_load1|node_load5|node_load15|node_memory_MemTotal_bytes\
             |node_memory_MemAvailable_bytes|fleet_agent_token_expiry_timestamp_seconds\
             |fleet_agent_info\"}}"
        );
        let states = format!(
            "{{{s}{sep}__name__=~\"fleet_agent_registration_state|fleet_agent_token_state\"}} == 1"
        );
        let mem = format!(
            "100 * (1 - node_memory_MemAvailable_bytes{{{s}}} / node_memory_MemTotal_bytes{{{s}}})"
        );
        let history = format!(
            "label_replace({cpu}, \"fleet_series\", \"cpu\", \"\", \"\") \
             or label_replace({mem}, \"fleet_series\", \"mem\", \"\", \"\")"
        );
        Ok(Self {
            http,
            source,
            cpu,
            gauges,
            states,
            history,
        })
    }

    async fn query(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<Series>, PromError> {
        let base = format!("{}/api/v1/{path}", self.source.url.trim_end_matches('/'));
        let mut url = reqwest::Url::parse(&base)
            .map_err(|e| PromError::BadResponse(format!("{base} is not a URL: {e}")))?;
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut request = self.http.get(url);
        request = match &self.source.auth {
            PromAuth::None => request,
            PromAuth::Bearer(token) => request.bearer_auth(token),
            PromAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
        };
        let response = request.send().await.map_err(|e| PromError::Unreachable {
            url: self.source.url.clone(),
            reason: crate::pki::tls::error_chain(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| PromError::BadResponse(crate::pki::tls::error_chain(&e)))?;
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            if status.is_success() {
                PromError::BadResponse(e.to_string())
            } else {
                PromError::Refused {
                    status: status.as_u16(),
                    reason: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                }
            }
        })?;
        match (answer.status.as_str(), answer.data) {
            ("success", Some(data)) => Ok(data.result),
            _ => Err(PromError::Refused {
                status: status.as_u16(),
                reason: answer.error.unwrap_or_else(|| "no data".into()),
            }),
        }
    }

    /// Every agent's figures now: three instant queries, run together.
    pub async fn fleet(&self) -> Result<HashMap<IpAddr, PromAgent>, PromError> {
        let (cpu, gauges, states) = (
            [("query", self.cpu.clone())],
            [("query", self.gauges.clone())],
            [("query", self.states.clone())],
        );
        let (cpu, gauges, states) = tokio::join!(
            self.query("query", &cpu),
            self.query("query", &gauges),
            self.query("query", &states),
        );
        let mut fleet: HashMap<IpAddr, PromAgent> = HashMap::new();
        for series in gauges? {
            let Some((ip, value, at)) = point(&series) else {
                continue;
            };
            let agent = fleet.entry(ip).or_default();
            agent.at_ms = agent.at_ms.max(at);
            let labels = &series.metric;
            match labels.get("__name__").map(String::as_str) {
                Some("up") => agent.up = Some(value > 0.5),
                Some("node_load1") => agent.load[0] = Some(value),
                Some("node_load5") => agent.load[1] = Some(value),
                Some("node_load15") => agent.load[2] = Some(value),
                Some("node_memory_MemTotal_bytes") => agent.mem_total = Some(value),
                Some("node_memory_MemAvailable_bytes") => agent.mem_available = Some(value),
                Some("fleet_agent_token_expiry_timestamp_seconds") => {
                    agent.token_expires_at = Some(value as i64);
                }
                Some("fleet_agent_info") => {
                    agent.version = labels.get("version").cloned();
                    agent.hostname = labels.get("hostname").cloned();
                }
                _ => {}
            }
        }
        for series in states? {
            let Some((ip, _, _)) = point(&series) else {
                continue;
            };
            let agent = fleet.entry(ip).or_default();
            let state = series.metric.get("state").map_or("", String::as_str);
            match series.metric.get("__name__").map(String::as_str) {
                Some("fleet_agent_registration_state") => {
                    agent.registration = RegistrationState::ALL
                        .iter()
                        .copied()
                        .find(|s| s.as_str() == state);
                }
                Some("fleet_agent_token_state") => {
                    agent.token = TokenState::ALL
                        .iter()
                        .copied()
                        .find(|s| s.as_str() == state);
                }
                _ => {}
            }
        }
        for series in cpu? {
            if let Some((ip, value, _)) = point(&series)
                && value.is_finite()
            {
                fleet.entry(ip).or_default().cpu_pct = Some(value.clamp(0.0, 100.0));
            }
        }
        Ok(fleet)
    }

    /// CPU and memory over the last `window`, every `step`: one range query.
    pub async fn history(
        &self,
        window: Duration,
        step: Duration,
        now_unix: f64,
    ) -> Result<HashMap<IpAddr, Vec<PromPoint>>, PromError> {
        let params = [
            ("query", self.history.clone()),
            ("start", format!("{:.3}", now_unix - window.as_secs_f64())),
            ("end", format!("{now_unix:.3}")),
            ("step", format!("{:.3}", step.as_secs_f64().max(1.0))),
        ];
        let mut by_host: HashMap<IpAddr, HashMap<i64, PromPoint>> = HashMap::new();
        for series in self.query("query_range", &params).await? {
            let Some(ip) = instance_ip(&series.metric) else {
                continue;
            };
            let cpu = series.metric.get("fleet_series").map(String::as_str) == Some("cpu");
            let points = by_host.entry(ip).or_default();
            for (at, text) in &series.values {
                let Ok(value) = text.parse::<f64>() else {
                    continue;
                };
                if !value.is_finite() {
                    continue;
                }
                let key = (at * 1000.0) as i64;
                let p = points.entry(key).or_insert(PromPoint {
                    at: *at,
                    cpu_pct: None,
                    mem_pct: None,
                });
                if cpu {
                    p.cpu_pct = Some(value.clamp(0.0, 100.0));
                } else {
                    p.mem_pct = Some(value.clamp(0.0, 100.0));
                }
            }
        }
        Ok(by_host
            .into_iter()
            .map(|(ip, points)| {
                let mut points: Vec<PromPoint> = points.into_values().collect();
                points.sort_by(|a, b| a.at.total_cmp(&b.at));
                (ip, points)
            })
            .collect())
    }
}

/// Now, in Unix seconds with a fraction (what Prometheus's API takes).
#[must_use]
pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The host a series belongs to: the address in its `instance` label.
fn instance_ip(labels: &HashMap<String, String>) -> Option<IpAddr> {
    let instance = labels.get("instance")?;
    instance
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| instance.parse::<IpAddr>())
        .ok()
}

/// The host, value and time (Unix ms) of an instant query's sample.
fn point(series: &Series) -> Option<(IpAddr, f64, i64)> {
    let ip = instance_ip(&series.metric)?;
    let (at, text) = series.value.as_ref()?;
    Some((ip, text.parse().ok()?, (at * 1000.0) as i64))
}

impl PromAgent {
    /// What the fleet table needs, as the agent's own stats would say it
    /// (byte counts are clamped at 0 before they become integers);
    /// `None` when Prometheus has not scraped it (or it is down): the
    /// reason is the error.
    #[allow(clippy::cast_sign_loss)]
    pub fn to_stats(&self, controller: &str) -> Result<AgentStats, String> {
        if self.up == Some(false) {
            return Err("Prometheus cannot scrape it (up == 0)".into());
        }
        let (Some(cpu), Some(total), Some(available)) =
            (self.cpu_pct, self.mem_total, self.mem_available)
        else {
            return Err("Prometheus has no recent CPU and memory samples of it".into());
        };
        let bytes = |v: Option<f64>| v.map_or(0, |v| v.max(0.0) as u64);
        Ok(AgentStats {
            agent_version: self.version.clone().unwrap_or_default(),
            hostname: self.hostname.clone().unwrap_or_default(),
            host_uptime_secs: 0,
            agent_uptime_secs: 0,
            agent_rss_bytes: 0,
            cpu: CpuStats {
                total_pct: cpu,
                per_core_pct: Vec::new(),
                load1: self.load[0].unwrap_or(0.0),
                load5: self.load[1].unwrap_or(0.0),
                load15: self.load[2].unwrap_or(0.0),
            },
            memory: MemoryStats {
                total_bytes: bytes(Some(total)),
                available_bytes: bytes(Some(available)),
                // Not in the table: the host detail reads its agent.
                swap_total_bytes: 0,
                swap_free_bytes: 0,
            },
            registration: RegistrationStatus {
                state: self.registration.unwrap_or(RegistrationState::Pending),
                agent_id: None,
                controller: controller.to_owned(),
                registered_at: None,
                last_heartbeat_at: None,
                consecutive_failures: 0,
                last_error: None,
            },
            token: TokenStatus {
                state: self.token.unwrap_or(TokenState::Valid),
                expires_at: self.token_expires_at,
                seconds_left: None,
                last_renewal_at: None,
                renewals: 0,
                last_error: None,
            },
            certificate: CertificateStatus {
                expires_at: None,
                seconds_left: None,
                last_renewal_at: None,
                renewals: 0,
            },
            sample: SampleInfo {
                taken_at_ms: self.at_ms,
                interval_ms: 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], value: &str) -> Series {
        Series {
            metric: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: Some((1_700_000_000.5, value.to_owned())),
            values: Vec::new(),
        }
    }

    #[test]
    fn series_are_matched_to_hosts_by_instance() {
        let s = series(
            &[("__name__", "node_load1"), ("instance", "127.16.1.5:9701")],
            "0.25",
        );
        assert_eq!(
            point(&s),
            Some(("127.16.1.5".parse().unwrap(), 0.25, 1_700_000_000_500))
        );
        let v6 = series(&[("instance", "[::1]:9701")], "1");
        assert_eq!(point(&v6).unwrap().0, "::1".parse::<IpAddr>().unwrap());
        assert!(point(&series(&[("instance", "web1:9701")], "1")).is_none());
        assert!(point(&series(&[("job", "fleet")], "1")).is_none());
    }

    #[test]
    fn the_selector_goes_into_every_query() {
        let client = PromClient::new(
            PromSource {
                url: "http://127.16.2.9:9090".into(),
                auth: PromAuth::Bearer("t".into()),
                ca_pem: None,
                selector: "job=\"fleet\"".into(),
            },
            Duration::from_secs(1),
        )
        .unwrap();
        for q in [&client.cpu, &client.gauges, &client.states, &client.history] {
            assert!(q.contains("{job=\"fleet\""), "{q}");
        }
        assert!(!format!("{:?}", client.source.auth).contains('t'));
    }

    #[test]
    fn an_agent_prometheus_cannot_scrape_has_no_stats() {
        let mut agent = PromAgent {
            up: Some(true),
            cpu_pct: Some(12.5),
            mem_total: Some(1000.0),
            mem_available: Some(250.0),
            registration: Some(RegistrationState::Registered),
            token: Some(TokenState::Expiring),
            token_expires_at: Some(1_700_000_600),
            ..PromAgent::default()
        };
        let stats = agent.to_stats("https://c").unwrap();
        assert!((stats.memory.used_pct() - 75.0).abs() < 1e-9);
        assert_eq!(stats.token.state, TokenState::Expiring);
        assert_eq!(stats.token.expires_at, Some(1_700_000_600));
        agent.up = Some(false);
        assert!(agent.to_stats("https://c").unwrap_err().contains("up == 0"));
        agent.up = Some(true);
        agent.cpu_pct = None;
        assert!(agent.to_stats("https://c").is_err());
    }
}
