//! Spacing probes evenly at a packets-per-second rate: [`Pacer`] for the
//! async TCP prober, [`TokenBucket`] for the batched raw-socket sender.

use std::time::Duration;

use tokio::time::Instant;

/// Hands out send slots at a fixed rate. Behind schedule it lets sends go at
/// once, but never banks more than a few milliseconds of slots, so a pause
/// (a retry waiting for its timeout) never turns into a burst.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

/// Sleeping for less than this is not worth a timer wake-up.
const SLACK: Duration = Duration::from_millis(1);
/// How far behind schedule the pacer may fall before it forgets the debt.
const MAX_DEBT: Duration = Duration::from_millis(5);

impl Pacer {
    /// `rate` probes per second; 0 means as fast as the socket takes them.
    #[must_use]
    pub fn new(rate: u32) -> Self {
        Self {
            interval: (rate > 0).then(|| Duration::from_secs(1) / rate),
            next: Instant::now(),
        }
    }

    /// Waits for the next slot. Cancel-safe: a dropped call takes no slot.
    pub async fn tick(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        if self.next + MAX_DEBT < now {
            self.next = now - MAX_DEBT;
        }
        if self.next > now + SLACK {
            tokio::time::sleep_until(self.next).await;
        }
        self.next += interval;
    }
}

/// Packets a batch may hold: enough that a system call is shared by many
/// probes, few enough that receiving keeps up and a batch is a short burst.
pub const MAX_BATCH: usize = 128;

/// Send credit that accrues at `rate` packets per second, capped at about a
/// millisecond's worth (at least one packet, and as much again to absorb
/// late wake-ups), so the sender can batch without ever exceeding the rate by
/// more than two milliseconds' worth in any window. Time is passed in, so it
/// is tested without sleeping.
#[derive(Debug)]
pub struct TokenBucket {
    /// Nanoseconds per packet; `None` for no limit.
    interval: Option<u64>,
    /// Packets a full bucket holds.
    capacity: u64,
    /// Credit in nanoseconds of sending time.
    credit: u64,
    last: Duration,
}

impl TokenBucket {
    /// `rate` packets per second, 0 for no limit; `now` is the caller's clock.
    #[must_use]
    pub fn new(rate: u32, now: Duration) -> Self {
        let capacity = (u64::from(rate) / 1000).clamp(1, MAX_BATCH as u64);
        let interval = (rate > 0).then(|| 1_000_000_000 / u64::from(rate));
        Self {
            interval,
            capacity,
            // Start with one packet's credit: the first probe goes at once.
            credit: interval.unwrap_or(0),
            last: now,
        }
    }

    /// How many packets may go now (at most [`MAX_BATCH`]).
    pub fn available(&mut self, now: Duration) -> usize {
        let Some(interval) = self.interval else {
            return MAX_BATCH;
        };
        let earned = now.saturating_sub(self.last).as_nanos() as u64;
        self.last = now.max(self.last);
        // Up to twice the capacity (at least one and a half packets) keeps
        // what a late wake-up earned, so a sender that slept long, or lost
        // its core for a moment, does not fall behind the rate.
        let full = self.capacity * interval;
        let cap = full + full.max(interval / 2);
        self.credit = self.credit.saturating_add(earned).min(cap);
        ((self.credit / interval) as usize).min(MAX_BATCH)
    }

    /// Packets worth waiting for before sending: a full bucket (a
    /// millisecond's worth), so batches stay large at high rates.
    #[must_use]
    pub fn batch(&self) -> usize {
        match self.interval {
            Some(_) => self.capacity as usize,
            None => MAX_BATCH,
        }
    }

    /// Spends credit for `packets` just sent.
    pub fn spend(&mut self, packets: usize) {
        if let Some(interval) = self.interval {
            self.credit = self.credit.saturating_sub(packets as u64 * interval);
        }
    }

    /// How long until `packets` may go (zero when they may now).
    #[must_use]
    pub fn wait_for(&self, packets: usize) -> Duration {
        let Some(interval) = self.interval else {
            return Duration::ZERO;
        };
        let needed = (packets as u64).min(self.capacity) * interval;
        Duration::from_nanos(needed.saturating_sub(self.credit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends as the scan's sender does (wait for a batch's credit, send what
    /// is available) over `total` packets; returns when the last one went.
    fn drain_bucket(
        rate: u32,
        total: usize,
        wake_late: Duration,
    ) -> (Duration, Vec<(Duration, usize)>) {
        let mut now = Duration::from_secs(1);
        let start = now;
        let mut bucket = TokenBucket::new(rate, now);
        let mut sent = 0;
        let mut log = Vec::new();
        while sent < total {
            let available = bucket.available(now);
            if available < bucket.batch() {
                now += bucket.wait_for(bucket.batch()) + wake_late;
                continue;
            }
            let n = available.min(total - sent);
            bucket.spend(n);
            sent += n;
            log.push((now.saturating_sub(start), n));
        }
        (now.saturating_sub(start), log)
    }

    #[test]
    fn the_bucket_keeps_the_rate_and_batches_at_high_rates() {
        for (rate, late) in [
            (1_000, Duration::ZERO),
            (1_000, Duration::from_micros(60)),
            (100_000, Duration::from_micros(60)),
        ] {
            let total = rate as usize * 2;
            let (took, log) = drain_bucket(rate, total, late);
            // Never faster than the rate; late wake-ups cost little.
            let expected = Duration::from_secs(2);
            assert!(
                took >= expected.saturating_sub(Duration::from_millis(2)),
                "rate {rate}, late {late:?}: {took:?}"
            );
            assert!(
                took <= expected * 105 / 100,
                "rate {rate}, late {late:?}: {took:?}"
            );
            // No window of one second holds more than rate + 2 ms' worth.
            let batch = (rate as usize / 1000).max(1) * 2;
            for (i, (t0, _)) in log.iter().enumerate() {
                let in_window: usize = log[i..]
                    .iter()
                    .take_while(|(t, _)| *t < *t0 + Duration::from_secs(1))
                    .map(|(_, n)| n)
                    .sum();
                assert!(
                    in_window <= rate as usize + batch,
                    "rate {rate}: {in_window} in one second"
                );
            }
            assert!(
                log.iter().all(|(_, n)| *n <= batch),
                "rate {rate}: batches of at most {batch}"
            );
        }
    }

    #[test]
    fn an_idle_bucket_banks_at_most_two_milliseconds() {
        let mut bucket = TokenBucket::new(100_000, Duration::ZERO);
        assert_eq!(
            bucket.available(Duration::from_secs(5)),
            128,
            "one full batch"
        );
        bucket.spend(128);
        assert_eq!(
            bucket.available(Duration::from_secs(5)),
            72,
            "and the rest of two ms"
        );
        bucket.spend(72);
        assert_eq!(bucket.available(Duration::from_secs(5)), 0);
        let mut unlimited = TokenBucket::new(0, Duration::ZERO);
        assert_eq!(unlimited.available(Duration::ZERO), MAX_BATCH);
        assert_eq!(unlimited.wait_for(MAX_BATCH), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_rate() {
        let mut pacer = Pacer::new(1_000);
        let start = Instant::now();
        for _ in 0..2_000 {
            pacer.tick().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1_990) && took <= Duration::from_millis(2_010),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_does_not_become_a_burst() {
        let mut pacer = Pacer::new(1_000);
        pacer.tick().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        for _ in 0..100 {
            pacer.tick().await;
        }
        // Only the few banked milliseconds go at once; the rest keep the pace.
        assert!(
            start.elapsed() >= Duration::from_millis(90),
            "{:?}",
            start.elapsed()
        );
    }
}
