//! One sandbox at a time: an flock'd file holding the owner's pid.
//!
//! flock is released by the kernel when its holder dies, so a crashed
//! sandbox never blocks the next one; the pid in the file is only for the
//! message that names who holds it.
//!
//! The file may live in the shared temp dir, where another user could
//! plant a symbolic link (or a file of their own) under its name. So it is
//! opened without following links, must be a regular file of ours with no
//! other name, and is never truncated: the pid is written over the start
//! of the file, padded to a fixed width.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use super::SandboxError;

/// Held for as long as the sandbox runs; dropping it releases the lock.
#[derive(Debug)]
pub(super) struct Lock {
    file: Flock<File>,
    path: PathBuf,
}

impl Lock {
    pub(super) fn acquire(path: &Path) -> Result<Self, SandboxError> {
        let io = |source| SandboxError::Io {
            what: format!("opening the sandbox lock {}", path.display()),
            source,
        };
        let refuse = |why: String| {
            io(std::io::Error::other(format!(
                "{why}; someone may be trying to redirect it: remove it if you \
                 did not make it, or set XDG_RUNTIME_DIR to a directory of your own"
            )))
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(path)
            .map_err(|e| match e.raw_os_error().map(Errno::from_raw) {
                Some(Errno::ELOOP) => refuse("it is a symbolic link".into()),
                _ => io(e),
            })?;
        let meta = file.metadata().map_err(io)?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.file_type().is_file() {
            return Err(refuse("it is not a regular file".into()));
        }
        if meta.uid() != me {
            return Err(refuse(format!(
                "it belongs to uid {}, not to you (uid {me})",
                meta.uid()
            )));
        }
        if meta.nlink() != 1 {
            return Err(refuse(format!(
                "it has {} names (hard links)",
                meta.nlink()
            )));
        }
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(SandboxError::AlreadyRunning {
                    pid: text.lines().next().and_then(|l| l.trim().parse().ok()),
                    lock: path.to_owned(),
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        file.write_all_at(&pid_record(Some(std::process::id())), 0)
            .map_err(io)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }
}

/// The first line of the lock: the holder's pid (blank once released),
/// always the same width so that writing it never leaves a longer pid's
/// digits behind and never needs a truncation.
fn pid_record(pid: Option<u32>) -> Vec<u8> {
    let pid = pid.map(|p| p.to_string()).unwrap_or_default();
    format!("{pid:<10}\n").into_bytes()
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Blanked, not removed: removing would race with a newcomer that has
        // already opened the old file and would lock an unlinked inode.
        let _ = self.file.write_all_at(&pid_record(None), 0);
        tracing::debug!(lock = %self.path.display(), "sandbox lock released");
    }
}

/// Where the lock lives by default: the user's runtime dir, else the temp dir.
pub(super) fn default_path() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!(
        "fleetctl-sandbox-{}.lock",
        nix::unistd::getuid().as_raw()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = Lock::acquire(&path).unwrap();
        let err = Lock::acquire(&path).unwrap_err();
        let SandboxError::AlreadyRunning { pid, lock } = &err else {
            panic!("{err}");
        };
        assert_eq!(*pid, Some(std::process::id()));
        assert_eq!(lock, &path);
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(first);
        Lock::acquire(&path).unwrap();
    }

    #[test]
    fn a_planted_link_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = dir.path().join("lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = Lock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let err = Lock::acquire(&hard).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = Lock::acquire(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_file_is_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let before = format!("{}\nwhatever was here stays\n", "9".repeat(30));
        std::fs::write(&path, &before).unwrap();
        let lock = Lock::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), before.len(), "{text:?}");
        let first = text.lines().next().unwrap().trim();
        assert!(
            first.starts_with(&std::process::id().to_string()),
            "{text:?}"
        );
        let err = Lock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(lock);
        assert_eq!(std::fs::read(&path).unwrap().len(), before.len());
    }

    #[test]
    #[ignore = "needs root (chown to another user), as .ci/run runs the interop suite"]
    fn a_lock_file_of_another_user_is_refused() {
        assert!(nix::unistd::geteuid().is_root(), "run as root");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "").unwrap();
        let nobody = nix::unistd::Uid::from_raw(65_534);
        nix::unistd::chown(&path, Some(nobody), None).unwrap();
        let err = Lock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
    }
}
