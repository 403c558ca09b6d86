//! A made-up fleet in every state the console shows, the same every time:
//! what the render tests snapshot and the frame benchmark draws.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{FleetSnapshot, HostView, JobId, JobKind, JobView, Mark, Sample};
use crate::model::stats::{
    CertificateStatus, CpuStats, MemoryStats, RegistrationStatus, SampleInfo, TokenStatus,
};
use crate::model::{
    AgentState, AgentStats, HostFacts, HostScan, Reach, RegistrationState, SshState, TokenState,
    Via,
};

/// A repeatable pseudo-random sequence (no dependency, no seed file).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

fn pct(seed: u64) -> f64 {
    (mix(seed) % 1000) as f64 / 10.0
}

fn stats(i: u64, now: i64, token_left: i64) -> AgentStats {
    let cores = 2 + (i % 3) as usize * 2;
    AgentStats {
        agent_version: "0.1.0".into(),
        hostname: format!("node-{i:04}"),
        host_uptime_secs: 86_400 + i,
        agent_uptime_secs: 3600,
        agent_rss_bytes: 12 << 20,
        cpu: CpuStats {
            total_pct: pct(i * 7 + 1),
            per_core_pct: (0..cores).map(|c| pct(i * 31 + c as u64)).collect(),
            load1: pct(i * 3) / 25.0,
            load5: 0.5,
            load15: 0.4,
        },
        memory: MemoryStats {
            total_bytes: 8 << 30,
            available_bytes: (8u64 << 30) / 100 * (mix(i * 11 + 1) % 100),
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        },
        registration: RegistrationStatus {
            state: RegistrationState::Registered,
            agent_id: Some(format!("agent-{i}")),
            controller: "https://127.0.0.1:7443".into(),
            registered_at: Some(now - 7200),
            last_heartbeat_at: Some(now - 4),
            consecutive_failures: 0,
            last_error: None,
        },
        token: TokenStatus {
            state: TokenState::Valid,
            expires_at: Some(now + token_left),
            seconds_left: Some(token_left),
            last_renewal_at: Some(now - 1800),
            renewals: 3,
            last_error: None,
        },
        certificate: CertificateStatus {
            expires_at: None,
            seconds_left: None,
            last_renewal_at: None,
            renewals: 0,
        },
        sample: SampleInfo {
            taken_at_ms: now * 1000,
            interval_ms: 2000,
        },
    }
}

/// Host `i` of a sample fleet at `now` (Unix seconds) and `at` (monotonic).
#[must_use]
pub fn host(i: u64, now: i64, at: Instant) -> HostView {
    let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0001 + i as u32));
    let mut scan = HostScan::new(addr, Reach::Alive);
    scan.via = Some(Via::Tcp(22));
    scan.open_ports = vec![22];
    let mut view = HostView::from_scan(scan, Some(now - (i % 50).cast_signed()));
    // Every few hosts, another state the console must show.
    match i % 10 {
        9 => {
            view.scan.reach = Reach::Silent;
            view.last_seen = Some(now - 3600);
            return view;
        }
        8 => {
            view.ssh = SshState::HostKeyChanged;
            view.ssh_error = Some("HOST KEY CHANGED".into());
            return view;
        }
        7 => return view, // found, not fingerprinted yet
        _ => {}
    }
    let os = [("debian", "12"), ("ubuntu", "24.04"), ("alpine", "3.20")][(i % 3) as usize];
    view.facts = Some(HostFacts {
        hostname: Some(format!("node-{i:04}")),
        os_id: Some(os.0.into()),
        os_version: Some(os.1.into()),
        os_pretty: Some(format!("{} {}", os.0, os.1)),
        kernel: Some("Linux 6.1.0-18-amd64".into()),
        arch: Some("x86_64".into()),
        cpu_model: Some("AMD EPYC 7763".into()),
        cpu_count: Some(4),
        mem_total_bytes: Some(8 << 30),
        ..HostFacts::default()
    });
    view.host_key = Some("SHA256:q0cNMGp7Cq8T9sRvGk2p7gX6S2aQ8bW1YHn3Yb5fKxA".into());
    view.ssh = SshState::Ok;
    if i % 10 == 6 {
        return view; // fingerprinted, no agent
    }
    // Tokens: mostly hours left, some close to expiry, one expired.
    let token_left = match i % 10 {
        4 => 600,
        5 => -30,
        _ => 3 * 3600 + (i % 60).cast_signed() * 60,
    };
    let stats = stats(i, now, token_left);
    view.registration = stats.registration.state;
    view.token = if token_left < 0 {
        TokenState::Expired
    } else {
        stats.token.state
    };
    view.token_expires_at = stats.token.expires_at;
    for k in 0..150u64 {
        let back = Duration::from_secs((150 - k) * 2);
        view.history.push(Sample {
            at: at.checked_sub(back).unwrap_or(at),
            cpu_pct: pct(i * 1000 + k + 1) as f32,
            mem_pct: (40.0 + pct(i * 2000 + k + 7) / 5.0) as f32,
        });
    }
    view.agent = if i % 10 == 3 {
        view.stats_error = Some("connection refused".into());
        AgentState::Unreachable
    } else {
        AgentState::Running
    };
    view.stats = Some(Arc::new(stats));
    // Registered two hours ago: the whole window registered, with a
    // heartbeat every 10 s, a renewal, and the expired token's last minutes.
    view.note_timeline(now);
    let answering = if view.agent == AgentState::Running {
        5
    } else {
        120
    };
    for back in (answering..300).step_by(10) {
        view.timeline.record(now - back, Mark::Heartbeat);
    }
    if token_left < 0 {
        view.timeline
            .record(now - 200, Mark::Token(TokenState::Expiring));
    } else {
        view.timeline.record(now - 130, Mark::TokenRenewed);
    }
    view.log(now - 7200, "agent answering");
    view.log(now - 1800, "token: renewed");
    view
}

/// A fleet of `n` hosts, with one scan running.
#[must_use]
pub fn fleet(n: usize, now: i64) -> FleetSnapshot {
    let at = Instant::now();
    FleetSnapshot {
        hosts: (0..n as u64).map(|i| Arc::new(host(i, now, at))).collect(),
        jobs: vec![JobView {
            id: JobId(1),
            kind: JobKind::Scan,
            label: "10.0.0.0/16".into(),
            done: 16_000,
            total: 65_534,
            started_at: now - 3,
            batch: None,
            batch_results: Vec::new(),
            paused: false,
        }],
        generation: 1,
        now_unix: now,
        taken_at: at,
    }
}
