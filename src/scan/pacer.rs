//! Spacing probes evenly at a packets-per-second rate.

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

#[cfg(test)]
mod tests {
    use super::*;

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
