//! Parsers for the /proc files the collector reads. Pure functions of the
//! file's text, so odd kernels are tested with fixtures, not machines.

/// Ticks per second of /proc/stat counters. The kernel fixes `USER_HZ` at
/// 100 in its ABI on every architecture Linux runs, whatever `CONFIG_HZ` is.
pub const USER_HZ: f64 = 100.0;

/// One `cpu` line of /proc/stat, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// The modes node_exporter names, with their tick counts.
    #[must_use]
    pub fn modes(&self) -> [(&'static str, u64); 8] {
        [
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("irq", self.irq),
            ("nice", self.nice),
            ("softirq", self.softirq),
            ("steal", self.steal),
            ("system", self.system),
            ("user", self.user),
        ]
    }

    /// Every tick. Guest time is left out: the kernel already counts it in
    /// user and nice.
    fn total(&self) -> u64 {
        self.modes().iter().map(|(_, t)| t).sum()
    }

    fn idle_total(&self) -> u64 {
        self.idle + self.iowait
    }

    /// Busy share of the ticks between `earlier` and `self`, 0..=100.
    /// Counters that did not advance, or went backwards (a CPU brought back
    /// online restarts from zero), give 0 rather than nonsense.
    #[must_use]
    pub fn busy_pct_since(&self, earlier: &Self) -> f64 {
        let total = self.total().saturating_sub(earlier.total());
        let idle = self.idle_total().saturating_sub(earlier.idle_total());
        if total == 0 {
            return 0.0;
        }
        let busy = total.saturating_sub(idle);
        (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
    }
}

/// What the collector takes from /proc/stat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    /// The aggregate `cpu` line.
    pub total: CpuTimes,
    /// `(index, times)` for each `cpuN` line, in the file's order. Offline
    /// CPUs have no line, so indexes may skip.
    pub cores: Vec<(u32, CpuTimes)>,
    /// `btime`: when the host booted, Unix seconds.
    pub boot_time: Option<u64>,
}

/// Parses /proc/stat. Returns `None` without an aggregate `cpu` line.
#[must_use]
pub fn parse_stat(text: &str) -> Option<Stat> {
    let mut total = None;
    let mut cores = Vec::new();
    let mut boot_time = None;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if key == "btime" {
            boot_time = fields.next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = key.strip_prefix("cpu") {
            let Some(times) = parse_cpu_fields(fields) else {
                continue;
            };
            if rest.is_empty() {
                total = Some(times);
            } else if let Ok(index) = rest.parse() {
                cores.push((index, times));
            }
        }
    }
    Some(Stat {
        total: total?,
        cores,
        boot_time,
    })
}

/// Old kernels have fewer columns (steal since 2.6.11); missing ones are 0.
fn parse_cpu_fields<'a>(fields: impl Iterator<Item = &'a str>) -> Option<CpuTimes> {
    let mut v = [0u64; 8];
    let mut n = 0;
    for (slot, field) in v.iter_mut().zip(fields) {
        *slot = field.parse().ok()?;
        n += 1;
    }
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v;
    Some(CpuTimes {
        user,
        nice,
        system,
        idle,
        iowait,
        irq,
        softirq,
        steal,
    })
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
#[must_use]
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// Memory and swap from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// Parses /proc/meminfo. Kernels before 3.14 have no `MemAvailable`; it is
/// then estimated as free + buffers + page cache, as `free(1)` did.
#[must_use]
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let (mut total, mut free, mut available) = (None, None, None);
    let (mut buffers, mut cached) = (0, 0);
    let (mut swap_total, mut swap_free) = (0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        match key {
            "MemTotal" => total = Some(bytes),
            "MemFree" => free = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "Buffers" => buffers = bytes,
            "Cached" => cached = bytes,
            "SwapTotal" => swap_total = bytes,
            "SwapFree" => swap_free = bytes,
            _ => {}
        }
    }
    let free = free.unwrap_or(0);
    Some(MemInfo {
        total: total?,
        free,
        available: available.unwrap_or(free + buffers + cached),
        swap_total,
        swap_free,
    })
}

/// Seconds since boot, from the first field of /proc/uptime.
#[must_use]
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Resident memory in bytes, from `VmRSS` in /proc/PID/status.
#[must_use]
pub fn parse_status_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
cpu  36046 0 17000 107549 3153 0 96 48 0 0
cpu0 17078 0 8041 55642 1135 0 15 23 0 0
cpu1 18967 0 8958 51907 2018 0 80 25 0 0
intr 395574 0 0 0
ctxt 581460
btime 1763900000
processes 16515
";

    #[test]
    fn stat_has_total_cores_and_boot_time() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.total.user, 36046);
        assert_eq!(s.total.steal, 48);
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.cores[1].0, 1);
        assert_eq!(s.cores[1].1.softirq, 80);
        assert_eq!(s.boot_time, Some(1_763_900_000));
    }

    #[test]
    fn offline_cpu_leaves_a_gap_in_indexes() {
        let text = "cpu  10 0 10 80\ncpu0 5 0 5 40\ncpu2 5 0 5 40\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.cores.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        // Four columns (a 2.4 kernel): the rest are zero.
        assert_eq!(s.total.iowait, 0);
    }

    #[test]
    fn stat_without_aggregate_line_is_refused() {
        assert_eq!(parse_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("cpu x y z w\n"), None);
    }

    #[test]
    fn busy_share_from_deltas() {
        let a = CpuTimes {
            user: 100,
            idle: 100,
            ..CpuTimes::default()
        };
        let b = CpuTimes {
            user: 130,
            system: 20,
            idle: 140,
            iowait: 10,
            ..a
        };
        // 50 busy ticks out of 100.
        assert!((b.busy_pct_since(&a) - 50.0).abs() < 1e-9);
        // Nothing advanced: 0, not NaN.
        assert!(a.busy_pct_since(&a).abs() < f64::EPSILON);
        // Went backwards (CPU re-onlined): 0, not a huge number.
        assert!(a.busy_pct_since(&b).abs() < f64::EPSILON);
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.20 0.68 0.50 2/89 16515\n"),
            Some([0.20, 0.68, 0.50])
        );
        assert_eq!(parse_loadavg("0.20\n"), None);
    }

    #[test]
    fn meminfo_in_bytes() {
        let text = "MemTotal:        8000000 kB\nMemFree:  1000 kB\nMemAvailable:    4000000 kB\n\
                    Buffers: 10 kB\nCached: 20 kB\nSwapTotal:       2097148 kB\nSwapFree:        2097148 kB\n\
                    HugePages_Total:       0\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 8_000_000 * 1024);
        assert_eq!(m.available, 4_000_000 * 1024);
        assert_eq!(m.swap_total, 2_097_148 * 1024);
        assert_eq!(m.swap_free, m.swap_total);
    }

    #[test]
    fn meminfo_before_memavailable_estimates_it() {
        let text = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 20 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.available, 35 * 1024);
        assert_eq!(m.swap_total, 0);
        assert_eq!(parse_meminfo("MemFree: 10 kB\n"), None);
    }

    #[test]
    fn uptime_and_rss() {
        assert_eq!(parse_uptime("12345.67 22222.00\n"), Some(12345.67));
        assert_eq!(parse_uptime(""), None);
        let status = "Name:\tfleetctl\nVmPeak:\t 9000 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(parse_status_rss(status), Some(5120 * 1024));
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }
}
