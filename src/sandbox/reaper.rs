//! Finding and ending every process the sandbox's hosts started.
//!
//! Each exec runs in a process group of its own, so killing the groups ends
//! the commands and whatever they left in the background. A process that
//! called setsid has left its group, so every exec's environment also
//! carries `FLEETCTL_SANDBOX=<root>`: /proc shows a process's initial
//! environment to its owner, which finds those too. A program whose file
//! lies inside the root is the sandbox's too, whatever its environment: a
//! deployed agent runs from the host's home with a clean one, in a session
//! of its own. The working directory is not a mark: an operator's shell
//! `cd`'d into the sandbox must survive.
//!
//! A group id is only signalled while /proc shows it is still ours (a member
//! is marked, or is in our session), so a pid reused since by someone else's
//! process group is never touched.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
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

/// One live process, as /proc tells it.
struct Proc {
    pid: i32,
    pgid: i32,
    sid: i32,
    marked: bool,
}

impl Tracker {
    pub(super) fn add(&self, pgid: u32) {
        if let Ok(id) = i32::try_from(pgid) {
            self.lock().insert(id);
        }
    }

    /// Forgets a group once nothing is left in it.
    pub(super) fn forget_if_empty(&self, pgid: u32) {
        if let Ok(id) = i32::try_from(pgid)
            && killpg(Pid::from_raw(id), None::<Signal>).is_err()
        {
            self.lock().remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends every process of the sandbox rooted at `root`: SIGTERM, a short
    /// grace, then SIGKILL to what is left. Blocks for at most about a second.
    pub(super) fn kill_all(&self, root: &Path) {
        let tracked: BTreeSet<i32> = self.lock().clone();
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            if !signal_all(&tracked, root, sig) {
                break;
            }
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline && !ours(&tracked, root).is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.lock().clear();
    }
}

/// Sends `sig` to every process and group of ours; false if there were none.
fn signal_all(tracked: &BTreeSet<i32>, root: &Path, sig: Signal) -> bool {
    let procs = ours(tracked, root);
    let own_group = nix::unistd::getpgrp().as_raw();
    let groups: BTreeSet<i32> = procs.iter().map(|p| p.pgid).collect();
    for &g in groups.iter().filter(|&&g| g != own_group) {
        let _ = killpg(Pid::from_raw(g), sig);
    }
    for p in procs.iter().filter(|p| p.marked) {
        let _ = kill(Pid::from_raw(p.pid), sig);
    }
    !procs.is_empty()
}

/// Live processes that are the sandbox's: marked, or in a tracked group
/// and still in our session.
fn ours(tracked: &BTreeSet<i32>, root: &Path) -> Vec<Proc> {
    let our_sid = nix::unistd::getsid(None).map_or(-1, Pid::as_raw);
    live(root)
        .into_iter()
        .filter(|p| p.marked || (tracked.contains(&p.pgid) && p.sid == our_sid))
        .collect()
}

/// Live (not zombie) processes of this user, but this one.
fn live(root: &Path) -> Vec<Proc> {
    let mut wanted = Vec::from(MARKER.as_bytes());
    wanted.push(b'=');
    wanted.extend_from_slice(root.as_os_str().as_bytes());
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which is in parentheses and may hold ')'.
            let rest = &stat[stat.iter().rposition(|&b| b == b')')? + 2..];
            let mut fields = rest.split(|&b| b == b' ');
            let state = fields.next()?;
            if state == b"Z" || state == b"X" {
                return None;
            }
            let mut num = || {
                std::str::from_utf8(fields.next()?)
                    .ok()?
                    .parse::<i32>()
                    .ok()
            };
            let (_ppid, pgid, sid) = (num()?, num()?, num()?);
            // Another user's environ and exe are unreadable: never marked, never ours.
            let marked = std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == wanted.as_slice()))
                || runs_from(pid, root);
            Some(Proc {
                pid,
                pgid,
                sid,
                marked,
            })
        })
        .collect()
}

/// Whether process `pid` runs a program from inside `root` (also once that
/// file is deleted: the kernel then appends " (deleted)" to the last name).
fn runs_from(pid: i32, root: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(root))
}
