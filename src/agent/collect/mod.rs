//! The collector: reads /proc on an interval into one shared snapshot.
//! Readers (the stats API) take the latest [`Sample`] from a watch channel
//! and never touch /proc themselves, so a scrape costs no system calls
//! beyond the socket.

pub mod procfs;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::model::stats::{CpuStats, MemoryStats};
use procfs::{CpuTimes, MemInfo, Stat};

/// One reading of the host, as the stats API serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub taken_at_ms: i64,
    pub interval_ms: u64,
    /// Utilisation over the interval before `taken_at_ms`.
    pub cpu: CpuStats,
    /// Raw counters, for `node_cpu_seconds_total`.
    pub cpu_times: Vec<(u32, CpuTimes)>,
    pub memory: MemInfo,
    pub host_uptime_secs: u64,
    pub boot_time: Option<u64>,
    pub agent_rss_bytes: u64,
}

impl Sample {
    #[must_use]
    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            total_bytes: self.memory.total,
            available_bytes: self.memory.available,
            swap_total_bytes: self.memory.swap_total,
            swap_free_bytes: self.memory.swap_free,
        }
    }
}

/// The text of the /proc files one sample reads.
#[derive(Debug, Default)]
pub struct ProcTexts {
    pub stat: String,
    pub loadavg: String,
    pub meminfo: String,
    pub uptime: String,
    pub self_status: String,
}

/// Reads the /proc files, keeping each open and re-reading it from offset
/// 0: procfs regenerates the text on every read from the start, and an
/// open file saves a path lookup and two system calls per file per sample.
#[derive(Debug, Default)]
pub struct ProcReader {
    files: [Option<std::fs::File>; 5],
    scratch: Vec<u8>,
}

const PATHS: [&str; 5] = [
    "/proc/stat",
    "/proc/loadavg",
    "/proc/meminfo",
    "/proc/uptime",
    "/proc/self/status",
];

impl ProcReader {
    /// Reads every file into `texts`, reusing its buffers. A file that
    /// cannot be read is left empty; the parsers then report what they can.
    pub fn read(&mut self, texts: &mut ProcTexts) {
        let bufs = [
            &mut texts.stat,
            &mut texts.loadavg,
            &mut texts.meminfo,
            &mut texts.uptime,
            &mut texts.self_status,
        ];
        for ((path, file), buf) in PATHS.iter().zip(&mut self.files).zip(bufs) {
            buf.clear();
            if file.is_none() {
                *file = std::fs::File::open(path).ok();
            }
            let Some(f) = file else { continue };
            match read_whole(f, &mut self.scratch) {
                Ok(n) => buf.push_str(&String::from_utf8_lossy(&self.scratch[..n])),
                // Try a fresh open next time.
                Err(_) => *file = None,
            }
        }
    }
}

/// The whole file from offset 0 into `scratch` (grown as needed); returns
/// its length.
fn read_whole(f: &std::fs::File, scratch: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    if scratch.is_empty() {
        scratch.resize(8192, 0);
    }
    let mut len = 0;
    loop {
        if len == scratch.len() {
            scratch.resize(len * 2, 0);
        }
        let n = f.read_at(&mut scratch[len..], len as u64)?;
        if n == 0 {
            return Ok(len);
        }
        len += n;
    }
}

/// Turns successive readings into samples; keeps the previous /proc/stat
/// for the deltas.
#[derive(Debug, Default)]
pub struct Collector {
    previous: Option<Stat>,
    interval_ms: u64,
}

impl Collector {
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Self {
            previous: None,
            interval_ms: interval.as_millis() as u64,
        }
    }

    /// One sample from the texts read at `now_ms`. The first sample has no
    /// deltas yet, so its CPU figures are 0.
    pub fn sample(&mut self, texts: &ProcTexts, now_ms: i64) -> Sample {
        let stat = procfs::parse_stat(&texts.stat).unwrap_or_default();
        let cpu = self.cpu_stats(&stat, &texts.loadavg);
        let sample = Sample {
            taken_at_ms: now_ms,
            interval_ms: self.interval_ms,
            cpu,
            cpu_times: stat.cores.clone(),
            memory: procfs::parse_meminfo(&texts.meminfo).unwrap_or_default(),
            host_uptime_secs: procfs::parse_uptime(&texts.uptime)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map_or(0, |d| d.as_secs()),
            boot_time: stat.boot_time,
            agent_rss_bytes: procfs::parse_status_rss(&texts.self_status).unwrap_or(0),
        };
        self.previous = Some(stat);
        sample
    }

    fn cpu_stats(&self, stat: &Stat, loadavg: &str) -> CpuStats {
        let [one, five, fifteen] = procfs::parse_loadavg(loadavg).unwrap_or_default();
        let previous = self.previous.as_ref();
        let total_pct = previous.map_or(0.0, |p| stat.total.busy_pct_since(&p.total));
        // Cores are matched by index: one that was offline last time (or
        // is new) has no delta yet and shows 0.
        let per_core_pct = stat
            .cores
            .iter()
            .map(|(index, now)| {
                previous
                    .and_then(|p| p.cores.iter().find(|(i, _)| i == index))
                    .map_or(0.0, |(_, before)| now.busy_pct_since(before))
            })
            .collect();
        CpuStats {
            total_pct,
            per_core_pct,
            load1: one,
            load5: five,
            load15: fifteen,
        }
    }
}

/// The latest sample; cheap to clone, never blocks the collector for long.
pub type Samples = watch::Receiver<Arc<Sample>>;

/// Starts sampling every `interval` until the returned receivers are all
/// dropped. The first sample is taken before this returns, so readers
/// always see real numbers.
#[must_use]
pub fn spawn(interval: Duration) -> Samples {
    let mut collector = Collector::new(interval);
    let mut reader = ProcReader::default();
    let mut texts = ProcTexts::default();
    reader.read(&mut texts);
    let (tx, rx) = watch::channel(Arc::new(collector.sample(&texts, now_ms())));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            reader.read(&mut texts);
            let sample = Arc::new(collector.sample(&texts, now_ms()));
            if tx.send(sample).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wall-clock time in Unix milliseconds: the one clock, in the unit samples use.
pub use crate::model::time::now_unix_ms as now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(stat: &str) -> ProcTexts {
        ProcTexts {
            stat: stat.to_owned(),
            loadavg: "1.50 0.50 0.25 1/100 42\n".into(),
            meminfo: "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 500 kB\n".into(),
            uptime: "3600.5 7000.0\n".into(),
            self_status: "VmRSS:\t 2048 kB\n".into(),
        }
    }

    #[test]
    fn first_sample_has_no_cpu_deltas_then_deltas_per_core() {
        let mut c = Collector::new(Duration::from_secs(2));
        let first = c.sample(
            &texts("cpu 100 0 0 100\ncpu0 50 0 0 50\ncpu1 50 0 0 50\n"),
            1,
        );
        assert!(first.cpu.total_pct.abs() < f64::EPSILON);
        assert_eq!(first.cpu.per_core_pct, [0.0, 0.0]);
        assert!((first.cpu.load1 - 1.5).abs() < 1e-9);
        assert_eq!(first.memory.total, 1000 * 1024);
        assert_eq!(first.host_uptime_secs, 3600);
        assert_eq!(first.agent_rss_bytes, 2048 * 1024);
        assert_eq!(first.interval_ms, 2000);

        // cpu0 fully busy, cpu1 idle, over 100 ticks each.
        let second = c.sample(
            &texts("cpu 200 0 0 200\ncpu0 150 0 0 50\ncpu1 50 0 0 150\n"),
            2,
        );
        assert!((second.cpu.total_pct - 50.0).abs() < 1e-9);
        assert_eq!(second.cpu.per_core_pct, [100.0, 0.0]);
    }

    #[test]
    fn a_cpu_going_offline_and_back() {
        let mut c = Collector::new(Duration::from_secs(1));
        c.sample(&texts("cpu 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\n"), 1);
        let offline = c.sample(&texts("cpu 10 0 0 10\ncpu0 10 0 0 10\n"), 2);
        assert_eq!(offline.cpu.per_core_pct, [50.0]);
        assert_eq!(offline.cpu_times.len(), 1);
        // Back online with reset counters: no delta for it yet.
        let back = c.sample(&texts("cpu 20 0 0 20\ncpu0 20 0 0 10\ncpu1 0 0 0 5\n"), 3);
        assert_eq!(back.cpu.per_core_pct, [100.0, 0.0]);
    }

    #[test]
    fn unreadable_files_give_zeroes_not_panics() {
        let mut c = Collector::new(Duration::from_secs(1));
        let s = c.sample(&ProcTexts::default(), 5);
        assert_eq!(s.memory.total, 0);
        assert!(s.cpu.per_core_pct.is_empty());
        assert_eq!(s.taken_at_ms, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn samples_once_per_interval_and_stops_with_its_readers() {
        let mut rx = spawn(Duration::from_secs(2));
        assert!(
            rx.borrow().memory.total > 0,
            "the first sample is there at once"
        );
        rx.mark_unchanged();
        tokio::time::advance(Duration::from_millis(1900)).await;
        tokio::task::yield_now().await;
        assert!(!rx.has_changed().unwrap(), "sampled before the interval");
        tokio::time::advance(Duration::from_millis(200)).await;
        rx.changed().await.unwrap();
        rx.mark_unchanged();
        tokio::time::advance(Duration::from_secs(2)).await;
        rx.changed().await.unwrap();
    }

    #[test]
    fn reads_this_machine_and_rereads_fresh_text() {
        let mut reader = ProcReader::default();
        let mut t = ProcTexts::default();
        reader.read(&mut t);
        let s = Collector::new(Duration::from_secs(1)).sample(&t, now_ms());
        assert!(s.memory.total > 0);
        assert!(!s.cpu_times.is_empty());
        assert!(s.agent_rss_bytes > 0);
        assert_eq!(
            s.memory.total,
            procfs::parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap())
                .unwrap()
                .total
        );
        // The same open file read again shows what is true now.
        let before = procfs::parse_status_rss(&t.self_status).unwrap();
        let ballast = vec![1u8; 64 << 20];
        reader.read(&mut t);
        let after = procfs::parse_status_rss(&t.self_status).unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(std::hint::black_box(ballast));
    }
}
