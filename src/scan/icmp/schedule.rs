//! What to send next: retries whose timeout has passed first (as nmap gives
//! retransmissions priority), then first probes in target order; and when
//! the scan is over. Pure: the caller passes the clock and a view of what
//! each target has answered, so it is tested without a network.

use std::collections::VecDeque;
use std::time::Duration;

/// Probe kinds, as bits: a target is complete when it answered every kind
/// it was sent.
pub const ECHO: u8 = 1;
pub const SYN: u8 = 2;

/// One packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub index: u32,
    /// [`ECHO`] or [`SYN`].
    pub kind: u8,
    /// The first packet of this target's round: its send time is the round's.
    pub first: bool,
}

/// What the schedule needs to know of each target, at the moment it asks.
pub trait Targets {
    /// The probe kinds sent to this target.
    fn wanted(&self, index: usize) -> u8;
    /// The kinds it has answered so far.
    fn answered(&self, index: usize) -> u8;
    /// How long to wait for its answer before retrying (adaptive, so asked
    /// each time).
    fn timeout(&self, index: usize) -> Duration;
    /// How long to wait after its last try before giving up: longer than
    /// [`timeout`](Self::timeout) while nothing in its network has answered.
    fn last_timeout(&self, index: usize) -> Duration;
}

/// A target probed and not yet complete.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    index: u32,
    /// When its last round of probes went.
    sent: Duration,
    /// Rounds sent before the last: 0 after the first probe.
    retry: u32,
}

/// The order of a scan's probes.
#[derive(Debug)]
pub struct Schedule {
    total: usize,
    retries: u32,
    next_fresh: usize,
    /// Targets with tries left, in the order they were probed, so the
    /// head's timeout passes first (across networks, nearly so).
    waiting: VecDeque<Waiting>,
    /// Targets on their last try, in the order they were probed. Apart, so
    /// a long last wait never holds back another target's retry.
    last: VecDeque<Waiting>,
    /// Probes of a target that did not fit the last batch.
    carry: VecDeque<Probe>,
}

impl Schedule {
    #[must_use]
    pub fn new(total: usize, retries: u32) -> Self {
        Self {
            total,
            retries,
            next_fresh: 0,
            waiting: VecDeque::new(),
            last: VecDeque::new(),
            carry: VecDeque::new(),
        }
    }

    /// Adds to `out` up to `budget` probes to send at `now`: leftovers of the
    /// last batch, then retries that are due, then first probes. Targets that
    /// answered everything, or timed out on their last try, leave the schedule.
    ///
    /// `heard` is how far answers have been read: a target times out only
    /// when the answers that arrived before its deadline have all been seen,
    /// so a receiver that fell behind does not cause retries (or an early
    /// end) while the answer waits unread in a socket queue.
    pub fn fill(
        &mut self,
        now: Duration,
        heard: Duration,
        budget: usize,
        targets: &impl Targets,
        out: &mut Vec<Probe>,
    ) {
        while out.len() < budget
            && let Some(probe) = self.carry.pop_front()
        {
            out.push(probe);
        }
        while let Some(&head) = self.last.front() {
            let index = head.index as usize;
            let done = targets.wanted(index) & !targets.answered(index) == 0;
            if !done && heard < head.sent + targets.last_timeout(index) {
                break;
            }
            self.last.pop_front(); // complete, or given up: silent or port 22 filtered
        }
        while out.len() < budget
            && let Some(&head) = self.waiting.front()
        {
            let index = head.index as usize;
            let missing = targets.wanted(index) & !targets.answered(index);
            if missing == 0 {
                self.waiting.pop_front();
                continue;
            }
            if heard < head.sent + targets.timeout(index) {
                break;
            }
            self.waiting.pop_front();
            self.emit(head.index, missing, budget, out);
            self.wait(Waiting {
                index: head.index,
                sent: now,
                retry: head.retry + 1,
            });
        }
        while out.len() < budget && self.next_fresh < self.total {
            let index = self.next_fresh as u32;
            self.next_fresh += 1;
            self.emit(index, targets.wanted(index as usize), budget, out);
            self.wait(Waiting {
                index,
                sent: now,
                retry: 0,
            });
        }
    }

    fn wait(&mut self, waiting: Waiting) {
        if waiting.retry >= self.retries {
            self.last.push_back(waiting);
        } else {
            self.waiting.push_back(waiting);
        }
    }

    fn emit(&mut self, index: u32, kinds: u8, budget: usize, out: &mut Vec<Probe>) {
        let mut first = true;
        for kind in [ECHO, SYN] {
            if kinds & kind != 0 {
                let probe = Probe { index, kind, first };
                first = false;
                if out.len() < budget {
                    out.push(probe);
                } else {
                    self.carry.push_back(probe);
                }
            }
        }
    }

    /// When the next timeout passes, if any target waits (it is due once
    /// answers up to then are heard). Call after a [`fill`](Self::fill)
    /// that found nothing to send.
    #[must_use]
    pub fn next_due(&self, targets: &impl Targets) -> Option<Duration> {
        let retry = self
            .waiting
            .front()
            .map(|w| w.sent + targets.timeout(w.index as usize));
        let last = self
            .last
            .front()
            .map(|w| w.sent + targets.last_timeout(w.index as usize));
        retry.into_iter().chain(last).min()
    }

    /// Targets sent their first probe.
    #[must_use]
    pub fn started(&self) -> usize {
        self.next_fresh
    }

    /// Every target probed, and none waiting: the scan is over.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.next_fresh == self.total
            && self.waiting.is_empty()
            && self.last.is_empty()
            && self.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const MS: Duration = Duration::from_millis(1);

    struct Fake {
        wanted: Vec<u8>,
        answered: RefCell<Vec<u8>>,
        timeout: Duration,
        last_timeout: Duration,
    }

    impl Fake {
        fn new(wanted: &[u8], timeout: Duration) -> Self {
            Self {
                wanted: wanted.to_vec(),
                answered: RefCell::new(vec![0; wanted.len()]),
                timeout,
                last_timeout: timeout,
            }
        }
        fn answer(&self, index: usize, kind: u8) {
            self.answered.borrow_mut()[index] |= kind;
        }
    }

    impl Targets for Fake {
        fn wanted(&self, index: usize) -> u8 {
            self.wanted[index]
        }
        fn answered(&self, index: usize) -> u8 {
            self.answered.borrow()[index]
        }
        fn timeout(&self, _: usize) -> Duration {
            self.timeout
        }
        fn last_timeout(&self, _: usize) -> Duration {
            self.last_timeout
        }
    }

    /// Fills with every answer up to `now` already read.
    fn fill(s: &mut Schedule, now: Duration, budget: usize, t: &Fake) -> Vec<Probe> {
        let mut out = Vec::new();
        s.fill(now, now, budget, t, &mut out);
        out
    }

    fn p(index: u32, kind: u8) -> Probe {
        Probe {
            index,
            kind,
            first: kind == ECHO,
        }
    }

    #[test]
    fn first_probes_go_in_order_with_the_syn_beside_the_echo() {
        let t = Fake::new(&[ECHO | SYN, ECHO, ECHO | SYN], 100 * MS);
        let mut s = Schedule::new(3, 1);
        assert_eq!(fill(&mut s, MS, 3, &t), [p(0, ECHO), p(0, SYN), p(1, ECHO)]);
        // The budget split target 2 across batches: nothing is lost.
        assert_eq!(fill(&mut s, 2 * MS, 1, &t), [p(2, ECHO)]);
        assert_eq!(fill(&mut s, 3 * MS, 5, &t), [p(2, SYN)]);
        assert_eq!(s.started(), 3);
    }

    #[test]
    fn silent_targets_are_retried_after_their_timeout_then_given_up() {
        let t = Fake::new(&[ECHO, ECHO], 100 * MS);
        let mut s = Schedule::new(2, 1);
        assert_eq!(fill(&mut s, Duration::ZERO, 10, &t).len(), 2);
        t.answer(1, ECHO);
        assert!(fill(&mut s, 99 * MS, 10, &t).is_empty(), "not due yet");
        assert_eq!(s.next_due(&t), Some(100 * MS));
        assert_eq!(
            fill(&mut s, 100 * MS, 10, &t),
            [p(0, ECHO)],
            "only the silent one"
        );
        assert!(!s.finished());
        assert_eq!(
            s.next_due(&t),
            Some(200 * MS),
            "the retry waits a full timeout"
        );
        assert!(fill(&mut s, 200 * MS, 10, &t).is_empty(), "no third try");
        assert!(s.finished());
    }

    #[test]
    fn only_the_unanswered_kind_is_retried() {
        let t = Fake::new(&[ECHO | SYN], 10 * MS);
        let mut s = Schedule::new(1, 2);
        fill(&mut s, Duration::ZERO, 10, &t);
        t.answer(0, ECHO);
        let retry = fill(&mut s, 10 * MS, 10, &t);
        assert_eq!(
            retry,
            [Probe {
                index: 0,
                kind: SYN,
                first: true
            }]
        );
        t.answer(0, SYN);
        assert!(fill(&mut s, 20 * MS, 10, &t).is_empty());
        assert!(s.finished(), "complete: nothing more to wait for");
    }

    #[test]
    fn the_scan_ends_as_soon_as_everyone_answered() {
        let t = Fake::new(&[ECHO; 1000], Duration::from_secs(5));
        let mut s = Schedule::new(1000, 3);
        while !fill(&mut s, MS, 128, &t).is_empty() {}
        assert!(!s.finished());
        for i in 0..1000 {
            t.answer(i, ECHO);
        }
        assert!(fill(&mut s, 2 * MS, 128, &t).is_empty());
        assert!(s.finished(), "no waiting out the 5 s timeout");
    }

    #[test]
    fn retries_come_before_fresh_targets_and_share_the_budget() {
        let t = Fake::new(&[ECHO; 6], 10 * MS);
        let mut s = Schedule::new(6, 1);
        assert_eq!(
            fill(&mut s, Duration::ZERO, 2, &t),
            [p(0, ECHO), p(1, ECHO)]
        );
        assert_eq!(
            fill(&mut s, 10 * MS, 3, &t),
            [p(0, ECHO), p(1, ECHO), p(2, ECHO)]
        );
    }

    #[test]
    fn a_long_last_wait_holds_back_no_other_retry() {
        let mut t = Fake::new(&[ECHO, ECHO], 10 * MS);
        // Target 0's network never answered: its last try waits longer.
        t.last_timeout = 500 * MS;
        let mut s = Schedule::new(2, 1);
        assert_eq!(fill(&mut s, Duration::ZERO, 1, &t), [p(0, ECHO)]);
        assert_eq!(fill(&mut s, 10 * MS, 1, &t), [p(0, ECHO)], "retried");
        assert_eq!(fill(&mut s, 11 * MS, 1, &t), [p(1, ECHO)]);
        assert_eq!(fill(&mut s, 21 * MS, 1, &t), [p(1, ECHO)], "not behind 0");
        assert!(fill(&mut s, 500 * MS, 1, &t).is_empty());
        assert!(!s.finished(), "0 waits out its last try");
        assert_eq!(s.next_due(&t), Some(510 * MS));
        assert!(fill(&mut s, 521 * MS, 1, &t).is_empty());
        assert!(s.finished());
    }

    #[test]
    fn a_receiver_behind_holds_retries_back_until_it_caught_up() {
        let t = Fake::new(&[ECHO], 20 * MS);
        let mut s = Schedule::new(1, 1);
        fill(&mut s, Duration::ZERO, 1, &t);
        let mut out = Vec::new();
        // 50 ms on, but answers were read only up to 10 ms: not due yet.
        s.fill(50 * MS, 10 * MS, 1, &t, &mut out);
        assert!(out.is_empty());
        // The receiver catches up and finds the answer: no retry at all.
        t.answer(0, ECHO);
        s.fill(51 * MS, 51 * MS, 1, &t, &mut out);
        assert!(out.is_empty());
        assert!(s.finished());
    }

    #[test]
    fn a_timeout_that_shrinks_makes_waiting_targets_due_sooner() {
        let mut t = Fake::new(&[ECHO], 500 * MS);
        let mut s = Schedule::new(1, 1);
        fill(&mut s, Duration::ZERO, 1, &t);
        t.timeout = 20 * MS; // answers elsewhere taught a shorter timeout
        assert_eq!(fill(&mut s, 20 * MS, 1, &t), [p(0, ECHO)]);
    }
}
