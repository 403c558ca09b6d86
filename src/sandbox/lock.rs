//! One sandbox at a time: an flock'd file holding the owner's pid.
//!
//! flock is released by the kernel when its holder dies, so a crashed
//! sandbox never blocks the next one; the pid in the file is only for the
//! message that names who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(SandboxError::AlreadyRunning {
                    pid: text.trim().parse().ok(),
                    lock: path.to_owned(),
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Emptied, not removed: removing would race with a newcomer that has
        // already opened the old file and would lock an unlinked inode.
        let _ = self.file.set_len(0);
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
}
