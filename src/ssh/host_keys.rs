//! Every known_hosts file OpenSSH would consult for a host, checked
//! together: the user files (`UserKnownHostsFile`, by default
//! `~/.ssh/known_hosts` and `~/.ssh/known_hosts2`) and the global ones
//! (`GlobalKnownHostsFile`, by default `/etc/ssh/ssh_known_hosts` and
//! `/etc/ssh/ssh_known_hosts2`).
//!
//! As in OpenSSH: a key `@revoked` in any file is refused; a key listed in
//! any file is known; a host listed in any file with other keys only has a
//! CHANGED key (never a new one), named by file and line; new keys are
//! learned into the first user file, hashed when `HashKnownHosts yes`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::known_hosts::{HostKey, KnownHosts, KnownHostsError, Verdict};

/// What to do when a known_hosts file cannot be read.
pub const UNREADABLE_HINT: &str = "host keys cannot be checked without it: make it readable, \
     or name the files to use with UserKnownHostsFile and GlobalKnownHostsFile in ssh_config";

/// OpenSSH's default GlobalKnownHostsFile.
pub const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// OpenSSH's default UserKnownHostsFile, under the home directory.
pub const USER_KNOWN_HOSTS: [&str; 2] = [".ssh/known_hosts", ".ssh/known_hosts2"];

/// The known_hosts files of one target, as its ssh_config settles them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHostsFiles {
    /// Checked; the first learns new keys. Empty for `UserKnownHostsFile none`.
    pub user: Vec<PathBuf>,
    /// Checked only (`GlobalKnownHostsFile`).
    pub global: Vec<PathBuf>,
    /// `HashKnownHosts yes`: learned names are written hashed.
    pub hash: bool,
}

impl KnownHostsFiles {
    /// OpenSSH's defaults for a user whose home is `home`.
    #[must_use]
    pub fn openssh_defaults(home: &Path) -> Self {
        Self {
            user: USER_KNOWN_HOSTS.iter().map(|f| home.join(f)).collect(),
            global: GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from).collect(),
            hash: false,
        }
    }

    /// Where new keys are learned: the first user file.
    #[must_use]
    pub fn learn_into(&self) -> Option<&Path> {
        self.user.first().map(PathBuf::as_path)
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.user.iter().chain(&self.global)
    }
}

/// What the files say of a key, and which file said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub verdict: Verdict,
    /// The file whose line the verdict names (for [`Verdict::Unknown`],
    /// the file a new key would be learned into).
    pub file: Option<PathBuf>,
}

/// Every known_hosts file a job has read, each read once; learned keys
/// are seen by the next connection.
#[derive(Debug, Default)]
pub struct HostKeyStore {
    files: HashMap<PathBuf, KnownHosts>,
}

impl HostKeyStore {
    /// Reads `path` unless already read. A missing file knows nothing; one
    /// that cannot be read is an error: a key pinned in it might be the
    /// one a host no longer presents.
    pub fn load(&mut self, path: &Path) -> Result<&mut KnownHosts, KnownHostsError> {
        if !self.files.contains_key(path) {
            let file = KnownHosts::load(path)?;
            self.files.insert(path.to_owned(), file);
        }
        self.files
            .get_mut(path)
            .ok_or_else(|| KnownHostsError::Read {
                path: path.to_owned(),
                cause: std::io::Error::other("vanished from the cache"),
            })
    }

    /// Checks `key` for `name` across `files`, user files first.
    pub fn check(
        &mut self,
        files: &KnownHostsFiles,
        name: &str,
        key: &HostKey,
    ) -> Result<Lookup, KnownHostsError> {
        let mut known = None;
        let mut changed = None;
        for path in files.all() {
            let file = self.load(path)?;
            if let Some(line) = file.revoked(name, key) {
                return Ok(Lookup {
                    verdict: Verdict::Revoked { line },
                    file: Some(path.clone()),
                });
            }
            match file.check_name(name, key) {
                verdict @ Verdict::Known { .. } => {
                    known.get_or_insert((verdict, path.clone()));
                }
                verdict @ Verdict::Changed { .. } => {
                    changed.get_or_insert((verdict, path.clone()));
                }
                Verdict::Unknown | Verdict::Revoked { .. } => {}
            }
        }
        Ok(match known.or(changed) {
            Some((verdict, path)) => Lookup {
                verdict,
                file: Some(path),
            },
            None => Lookup {
                verdict: Verdict::Unknown,
                file: files.learn_into().map(Path::to_owned),
            },
        })
    }

    /// The key algorithms the files list for `name`, user files first.
    pub fn algorithms_for(
        &mut self,
        files: &KnownHostsFiles,
        name: &str,
    ) -> Result<Vec<String>, KnownHostsError> {
        let mut algorithms = Vec::new();
        for path in files.all() {
            self.load(path)?.add_algorithms(name, &mut algorithms);
        }
        Ok(algorithms)
    }

    /// Learns `key` for `name` into the first user file; returns that file.
    pub fn learn(
        &mut self,
        files: &KnownHostsFiles,
        name: &str,
        key: &HostKey,
    ) -> Result<PathBuf, KnownHostsError> {
        let path = files.learn_into().ok_or_else(|| KnownHostsError::Write {
            path: PathBuf::from("none"),
            cause: std::io::Error::other(
                "UserKnownHostsFile is none: there is no file to learn host keys into",
            ),
        })?;
        self.load(path)?.learn(name, key, files.hash)?;
        Ok(path.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::known_hosts::host_name;

    fn key(seed: u8) -> HostKey {
        HostKey {
            algorithm: "ssh-ed25519".into(),
            blob: vec![seed; 51],
        }
    }

    struct Files {
        _dir: tempfile::TempDir,
        files: KnownHostsFiles,
    }

    /// A user file and a global file with these contents.
    fn files(user: &str, global: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("known_hosts"), dir.path().join("global"));
        std::fs::write(&u, user).unwrap();
        std::fs::write(&g, global).unwrap();
        Files {
            files: KnownHostsFiles {
                user: vec![u, dir.path().join("known_hosts2")],
                global: vec![g, dir.path().join("absent")],
                hash: false,
            },
            _dir: dir,
        }
    }

    #[test]
    fn a_key_pinned_only_globally_is_changed_not_new() {
        let f = files("", &format!("# pinned\nweb1 {}\n", key(1).to_openssh()));
        let mut store = HostKeyStore::default();
        let found = store.check(&f.files, "web1", &key(2)).unwrap();
        assert_eq!(
            found.verdict,
            Verdict::Changed {
                line: 2,
                expected: key(1)
            }
        );
        assert_eq!(found.file.as_deref(), Some(f.files.global[0].as_path()));
        let known = store.check(&f.files, "web1", &key(1)).unwrap();
        assert!(matches!(known.verdict, Verdict::Known { line: 2 }));
    }

    #[test]
    fn a_key_known_in_one_file_wins_over_another_files_other_key() {
        // Rotation: the user learned the new key, the global file lags.
        let f = files(
            &format!("web1 {}\n", key(2).to_openssh()),
            &format!("web1 {}\n", key(1).to_openssh()),
        );
        let mut store = HostKeyStore::default();
        let found = store.check(&f.files, "web1", &key(2)).unwrap();
        assert_eq!(found.verdict, Verdict::Known { line: 1 });
        assert_eq!(found.file.as_deref(), Some(f.files.user[0].as_path()));
    }

    #[test]
    fn revoked_anywhere_is_refused_even_when_known_elsewhere() {
        let f = files(
            &format!("web1 {}\n", key(3).to_openssh()),
            &format!("@revoked * {}\n", key(3).to_openssh()),
        );
        let mut store = HostKeyStore::default();
        let found = store.check(&f.files, "web1", &key(3)).unwrap();
        assert_eq!(found.verdict, Verdict::Revoked { line: 1 });
        assert_eq!(found.file.as_deref(), Some(f.files.global[0].as_path()));
    }

    #[test]
    fn unknown_keys_are_learned_into_the_first_user_file_hashed_if_asked() {
        let mut f = files("", "");
        f.files.hash = true;
        let mut store = HostKeyStore::default();
        let name = host_name("127.12.0.10", 2222);
        let found = store.check(&f.files, &name, &key(4)).unwrap();
        assert_eq!(found.verdict, Verdict::Unknown);
        assert_eq!(found.file.as_deref(), Some(f.files.user[0].as_path()));
        let into = store.learn(&f.files, &name, &key(4)).unwrap();
        assert_eq!(into, f.files.user[0]);
        let text = std::fs::read_to_string(&into).unwrap();
        assert!(
            text.starts_with("|1|") && !text.contains("127.12"),
            "{text}"
        );
        assert!(matches!(
            store.check(&f.files, &name, &key(4)).unwrap().verdict,
            Verdict::Known { .. }
        ));
        assert!(!f.files.user[1].exists(), "only the first user file learns");
        f.files.user.clear();
        assert!(store.learn(&f.files, &name, &key(5)).is_err());
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = KnownHostsFiles {
            user: vec![dir.path().to_owned()],
            ..KnownHostsFiles::default()
        };
        let err = HostKeyStore::default()
            .check(&files, "web1", &key(1))
            .unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn openssh_defaults_include_the_system_files() {
        let files = KnownHostsFiles::openssh_defaults(Path::new("/home/op"));
        assert_eq!(
            files.user,
            [
                PathBuf::from("/home/op/.ssh/known_hosts"),
                PathBuf::from("/home/op/.ssh/known_hosts2")
            ]
        );
        assert_eq!(
            files.global,
            [
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2")
            ]
        );
        assert!(!files.hash);
    }
}
