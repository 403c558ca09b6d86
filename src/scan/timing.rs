//! Adaptive probe timeouts: how long to wait for an answer, learned from the
//! answers seen so far, the way TCP (RFC 6298) and nmap do it.
//!
//! Every reply gives a round-trip time. Per target network (an IPv4 /24, an
//! IPv6 /64) and over the whole scan, a smoothed RTT and its mean deviation
//! are kept; a probe is given up after `srtt + 4 × rttvar`, clamped between
//! [`MIN_TIMEOUT`] and the configured timeout (the ceiling). Before any
//! answer at all, the ceiling applies. A network that has not answered yet
//! is retried on the scan's estimate (as nmap borrows its group's), but
//! given up only after the ceiling: a slow network probed after fast ones
//! must not be cut off by their pace.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The shortest a timeout becomes, however fast the answers: it absorbs a
/// scheduling hiccup of the receiving thread or a queue on the path, so one
/// slow answer does not cost a needless retry. Answers later than this still
/// count while the scan is listening.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(50);

/// Samples past this are not round trips but confusion (a reply matched to
/// the wrong send, a clock jump): ignored, as nmap does.
const MAX_SAMPLE: Duration = Duration::from_secs(8);
/// The first sample alone says little about variation: assume at least this.
const MIN_FIRST_VAR: Duration = Duration::from_millis(5);
/// Variation is capped so one burst of late replies cannot pin the timeout
/// at the ceiling for the rest of the scan.
const MAX_VAR: Duration = Duration::from_secs(2);

/// Smoothed round-trip time and its mean deviation (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimate {
    srtt: i64,
    rttvar: i64,
}

impl RttEstimate {
    /// The estimate after one sample.
    #[must_use]
    pub fn first(rtt: Duration) -> Self {
        let rtt = nanos(rtt);
        Self {
            srtt: rtt,
            rttvar: rtt.clamp(nanos(MIN_FIRST_VAR), nanos(MAX_VAR)),
        }
    }

    /// Folds in a sample: srtt moves 1/8 of the way, rttvar 1/4 (RFC 6298's
    /// gains, which nmap uses too).
    pub fn update(&mut self, rtt: Duration) {
        let delta = nanos(rtt) - self.srtt;
        self.srtt += delta / 8;
        self.rttvar += (delta.abs() - self.rttvar) / 4;
        self.rttvar = self.rttvar.min(nanos(MAX_VAR));
    }

    /// `srtt + 4 × rttvar`, unclamped.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        let t = self.srtt.saturating_add(self.rttvar.saturating_mul(4));
        Duration::from_nanos(u64::try_from(t).unwrap_or(0))
    }

    /// The smoothed round-trip time.
    #[must_use]
    pub fn srtt(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.srtt).unwrap_or(0))
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A network a target belongs to, for timing purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Network {
    V4(u32),
    V6(u64),
}

impl Network {
    fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => Network::V4(u32::from(a) >> 8),
            IpAddr::V6(a) => Network::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// The timeouts of one scan: per-network estimates, the scan's own, and the
/// bounds they are clamped to.
#[derive(Debug, Clone)]
pub struct Timeouts {
    floor: Duration,
    ceiling: Duration,
    scan: Option<RttEstimate>,
    networks: HashMap<Network, RttEstimate>,
}

impl Timeouts {
    /// `ceiling` is the configured timeout: the wait before any answer, and
    /// the most any estimate can ask for. A ceiling under [`MIN_TIMEOUT`]
    /// lowers the floor with it.
    #[must_use]
    pub fn new(ceiling: Duration) -> Self {
        Self {
            floor: MIN_TIMEOUT.min(ceiling),
            ceiling,
            scan: None,
            networks: HashMap::new(),
        }
    }

    /// Learns from a reply from `addr` that came `rtt` after its probe.
    pub fn observe(&mut self, addr: IpAddr, rtt: Duration) {
        if rtt > MAX_SAMPLE {
            return;
        }
        for estimate in [
            self.networks.get_mut(&Network::of(addr)),
            self.scan.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            estimate.update(rtt);
        }
        self.networks
            .entry(Network::of(addr))
            .or_insert_with(|| RttEstimate::first(rtt));
        self.scan.get_or_insert_with(|| RttEstimate::first(rtt));
    }

    /// How long to wait after the last try to `addr` before giving up: its
    /// network's own estimate once that network answered; until then the
    /// configured timeout, so a slow network is not cut short by estimates
    /// learned from fast ones.
    #[must_use]
    pub fn last_timeout_for(&self, addr: IpAddr) -> Duration {
        match self.networks.get(&Network::of(addr)) {
            Some(e) => e.timeout().clamp(self.floor, self.ceiling),
            None => self.ceiling,
        }
    }

    /// How long to wait for an answer from `addr` before trying again: its
    /// network's estimate, or the whole scan's while its network has not
    /// answered (a retry too early costs a packet, not a host).
    #[must_use]
    pub fn timeout_for(&self, addr: IpAddr) -> Duration {
        let estimate = self.networks.get(&Network::of(addr)).or(self.scan.as_ref());
        match estimate {
            Some(e) => e.timeout().clamp(self.floor, self.ceiling),
            None => self.ceiling,
        }
    }

    /// The scan-wide estimate, if anything answered.
    #[must_use]
    pub fn scan_estimate(&self) -> Option<RttEstimate> {
        self.scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn before_any_answer_the_configured_timeout_applies() {
        let t = Timeouts::new(500 * MS);
        assert_eq!(t.timeout_for(v4("10.0.0.1")), 500 * MS);
        assert_eq!(t.timeout_for(v4("fd00::1")), 500 * MS);
    }

    #[test]
    fn fast_answers_bring_the_timeout_down_to_the_floor() {
        let mut t = Timeouts::new(500 * MS);
        let host = v4("10.0.0.1");
        t.observe(host, Duration::from_micros(50));
        // One sample: the variation is assumed to be at least 5 ms.
        let first = t.timeout_for(host);
        assert_eq!(first, MIN_TIMEOUT, "{first:?}");
        for _ in 0..50 {
            t.observe(host, Duration::from_micros(50));
        }
        assert_eq!(t.timeout_for(host), MIN_TIMEOUT);
    }

    #[test]
    fn slow_jittery_answers_give_room_above_the_mean() {
        let mut t = Timeouts::new(Duration::from_secs(2));
        let host = v4("10.0.0.1");
        // 160 ms ± 40 ms, as a link delayed 80 ms ± 20 ms each way gives.
        for i in 0..200u64 {
            let rtt = 120 + i * 37 % 81; // 120..=200 ms, scattered
            t.observe(host, Duration::from_millis(rtt));
        }
        let timeout = t.timeout_for(host);
        assert!(
            timeout > 200 * MS && timeout < 500 * MS,
            "covers the slowest answers without waiting for the ceiling: {timeout:?}"
        );
        let srtt = t.scan_estimate().unwrap().srtt();
        assert!(srtt > 140 * MS && srtt < 180 * MS, "{srtt:?}");
    }

    #[test]
    fn the_configured_timeout_is_the_ceiling() {
        let mut t = Timeouts::new(300 * MS);
        let host = v4("10.0.0.1");
        t.observe(host, Duration::from_secs(1));
        assert_eq!(t.timeout_for(host), 300 * MS);
        // Under the floor, the configured timeout still wins.
        let mut tiny = Timeouts::new(5 * MS);
        tiny.observe(host, Duration::from_micros(10));
        assert_eq!(tiny.timeout_for(host), 5 * MS);
    }

    #[test]
    fn each_network_keeps_its_own_estimate_and_silent_ones_borrow_the_scans() {
        let mut t = Timeouts::new(Duration::from_secs(1));
        for _ in 0..50 {
            t.observe(v4("10.0.0.1"), Duration::from_micros(100));
            t.observe(v4("10.0.9.1"), 200 * MS);
        }
        assert_eq!(t.timeout_for(v4("10.0.0.200")), MIN_TIMEOUT, "same /24");
        let slow = t.timeout_for(v4("10.0.9.77"));
        assert!(slow >= 200 * MS, "{slow:?}");
        // A network with no answer of its own uses the whole scan's.
        let unknown = t.timeout_for(v4("10.0.5.1"));
        assert!(
            unknown > MIN_TIMEOUT && unknown < Duration::from_secs(1),
            "{unknown:?}"
        );
    }

    #[test]
    fn absurd_samples_are_ignored() {
        let mut t = Timeouts::new(Duration::from_secs(10));
        t.observe(v4("10.0.0.1"), Duration::from_mins(1));
        assert_eq!(t.scan_estimate(), None);
    }
}
