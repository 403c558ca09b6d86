//! Finding and ending every process the sandbox's hosts started.
//!
//! Each exec runs in its own process group, so killing the groups ends the
//! commands and whatever they left in the background. A process that called
//! setsid has left its group, so every exec's environment also carries
//! `FLEETCTL_SANDBOX=<root>`: /proc shows a process's initial environment to
//! its owner, which finds those too. The working directory is not a mark:
//! an operator's shell `cd`'d into the sandbox must survive its shutdown.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The environment variable that marks a sandbox's processes.
pub const MARKER: &str = "FLEETCTL_SANDBOX";

/// How long processes get to exit on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_millis(500);

/// The process groups started by exec requests, shared by every host.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracker {
    groups: Arc<Mutex<BTreeSet<i32>>>,
}

impl Tracker {
    pub(super) fn add(&self, pgid: u32) {
        if let Ok(id) = i32::try_from(pgid) {
            self.lock().insert(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends every process of the sandbox rooted at `root`: SIGTERM, a short
    /// grace, then SIGKILL to what is left. Blocks for at most about a second.
    pub(super) fn kill_all(&self, root: &Path) {
        let groups: Vec<i32> = self.lock().iter().copied().collect();
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            for &g in &groups {
                let _ = killpg(Pid::from_raw(g), sig);
            }
            for pid in marked(root) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline && !Self::all_gone(&groups, root) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if Self::all_gone(&groups, root) {
                break;
            }
        }
        self.lock().clear();
    }

    fn all_gone(groups: &[i32], root: &Path) -> bool {
        marked(root).is_empty()
            && groups
                .iter()
                .all(|&g| killpg(Pid::from_raw(g), None::<Signal>).is_err())
    }
}

/// Live (not zombie) processes whose environment carries the marker for `root`.
pub(super) fn marked(root: &Path) -> Vec<i32> {
    let mut wanted = Vec::from(MARKER.as_bytes());
    wanted.push(b'=');
    wanted.extend_from_slice(root.as_os_str().as_bytes());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| u32::try_from(pid).is_ok_and(|p| p != me))
        .filter(|&pid| {
            let dir = PathBuf::from(format!("/proc/{pid}"));
            std::fs::read(dir.join("environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == wanted.as_slice()))
                && !is_zombie(&dir)
        })
        .collect()
}

/// A zombie has exited; only its parent's wait is missing.
fn is_zombie(proc_dir: &Path) -> bool {
    std::fs::read(proc_dir.join("stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may itself hold ')'.
        stat.iter()
            .rposition(|&b| b == b')')
            .and_then(|i| stat.get(i + 2))
            .is_some_and(|&s| s == b'Z' || s == b'X')
    })
}
