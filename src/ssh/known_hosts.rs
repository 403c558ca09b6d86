//! One `known_hosts` file, read the way OpenSSH reads it: plain, wildcard,
//! negated, `[host]:port` and hashed (`|1|salt|hash`) host patterns,
//! `@revoked` keys refused, and a host whose known keys all differ from the
//! one it presents is a changed key, never a new one. `@cert-authority`
//! lines vouch only for host certificates; fleetctl checks plain host keys
//! (as OpenSSH does when no CA matches), so they never make a key known.
//! Checking several files together (user and global) is [`super::host_keys`].
//!
//! Keys are compared as (type, blob) pairs, so this module knows nothing of
//! the SSH library that produced them.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// A public host key: its algorithm name and wire-format blob.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    pub algorithm: String,
    pub blob: Vec<u8>,
}

impl HostKey {
    /// Parses the `ssh-ed25519 AAAA...` form (a trailing comment is ignored).
    #[must_use]
    pub fn from_openssh(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace();
        let algorithm = fields.next()?.to_string();
        let blob = STANDARD.decode(fields.next()?).ok()?;
        Some(Self { algorithm, blob })
    }

    /// `SHA256:...`, exactly as `ssh-keygen -lf` prints it.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let hash = digest::digest(&digest::SHA256, &self.blob);
        format!("SHA256:{}", STANDARD_NO_PAD.encode(hash.as_ref()))
    }

    /// The `ssh-ed25519 AAAA...` form.
    #[must_use]
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm, STANDARD.encode(&self.blob))
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.fingerprint())
    }
}

/// What `known_hosts` says of a host and the key it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is listed for this host, at this line.
    Known { line: usize },
    /// Nothing is listed for this host.
    Unknown,
    /// The host is listed with other keys: the first such entry is shown.
    Changed { line: usize, expected: HostKey },
    /// The key is marked `@revoked`.
    Revoked { line: usize },
}

/// Each message holds its cause (`cause`, never a `source()` too, which
/// the CLI would print a second time).
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot add the host key to {}: {cause}", path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// A parsed known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    marker: Marker,
    patterns: Vec<String>,
    key: HostKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    /// Certificate authorities are not used for plain host keys.
    CertAuthority,
}

/// How a host is named in known_hosts: bare for port 22, `[host]:port` otherwise.
#[must_use]
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Reads `path`; a missing file knows nothing.
    pub fn load(path: &Path) -> Result<Self, KnownHostsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                path: path.to_owned(),
                entries: Vec::new(),
            }),
            Err(cause) => Err(KnownHostsError::Read {
                path: path.to_owned(),
                cause,
            }),
        }
    }

    /// Parses the text of a known_hosts file. Lines that do not parse are
    /// skipped, as OpenSSH skips them.
    #[must_use]
    pub fn parse(text: &str, path: &Path) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(n, line)| parse_line(n + 1, line))
            .collect();
        Self {
            path: path.to_owned(),
            entries,
        }
    }

    /// The file this was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key` for `host` on `port` (the name as connected to).
    #[must_use]
    pub fn check(&self, host: &str, port: u16, key: &HostKey) -> Verdict {
        self.check_name(&host_name(host, port), key)
    }

    /// Checks `key` for the known_hosts name `name` (`host`, `[host]:port`,
    /// or a HostKeyAlias).
    #[must_use]
    pub fn check_name(&self, name: &str, key: &HostKey) -> Verdict {
        let mut changed = None;
        let mut known = None;
        for entry in self.entries.iter().filter(|e| e.matches(name)) {
            match entry.marker {
                Marker::Revoked if entry.key == *key => {
                    return Verdict::Revoked { line: entry.line };
                }
                Marker::None if entry.key == *key => {
                    known.get_or_insert(entry.line);
                }
                Marker::None => {
                    changed.get_or_insert((entry.line, entry.key.clone()));
                }
                Marker::Revoked | Marker::CertAuthority => {}
            }
        }
        match (known, changed) {
            (Some(line), _) => Verdict::Known { line },
            (None, Some((line, expected))) => Verdict::Changed { line, expected },
            (None, None) => Verdict::Unknown,
        }
    }

    /// The key algorithms listed for a host, so a client can ask the server
    /// for a key it can verify (as OpenSSH orders HostKeyAlgorithms).
    #[must_use]
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<String> {
        let mut algorithms = Vec::new();
        self.add_algorithms(&host_name(host, port), &mut algorithms);
        algorithms
    }

    /// Adds the algorithms of the keys listed for `name` to `algorithms`,
    /// each once, in file order.
    pub fn add_algorithms(&self, name: &str, algorithms: &mut Vec<String>) {
        for entry in self
            .entries
            .iter()
            .filter(|e| e.marker == Marker::None && e.matches(name))
        {
            if !algorithms.contains(&entry.key.algorithm) {
                algorithms.push(entry.key.algorithm.clone());
            }
        }
    }

    /// The line of an `@revoked` entry for `name` listing `key`, if any.
    #[must_use]
    pub fn revoked(&self, name: &str, key: &HostKey) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key == *key && e.matches(name))
            .map(|e| e.line)
    }

    /// Appends the key of `name` (as [`host_name`] or a HostKeyAlias gives
    /// it) in OpenSSH's format, the name hashed as `HashKnownHosts yes`
    /// writes it when `hash` (creating the file 0600 and its directory 0700
    /// if needed), and remembers it.
    pub fn learn(&mut self, name: &str, key: &HostKey, hash: bool) -> Result<(), KnownHostsError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let write_err = |cause| KnownHostsError::Write {
            path: self.path.clone(),
            cause,
        };
        if let Some(dir) = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(write_err)?;
        }
        let existing = std::fs::read(&self.path).unwrap_or_default();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(write_err)?;
        let pattern = if hash {
            let mut salt = [0u8; SALT_LEN];
            aws_lc_rs::rand::fill(&mut salt).map_err(|_| {
                write_err(std::io::Error::other("no random bytes for the hash's salt"))
            })?;
            hashed_name(name, &salt)
        } else {
            name.to_string()
        };
        let separator = if existing.is_empty() || existing.ends_with(b"\n") {
            ""
        } else {
            "\n"
        };
        writeln!(file, "{separator}{pattern} {}", key.to_openssh()).map_err(write_err)?;
        let line = String::from_utf8_lossy(&existing).lines().count() + 1;
        self.entries.push(Entry {
            line,
            marker: Marker::None,
            patterns: vec![pattern],
            key: key.clone(),
        });
        Ok(())
    }
}

fn parse_line(line: usize, text: &str) -> Option<Entry> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let mut fields = text.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let algorithm = fields.next()?.to_string();
    let blob = STANDARD.decode(fields.next()?).ok()?;
    Some(Entry {
        line,
        marker,
        patterns: first.split(',').map(str::to_string).collect(),
        key: HostKey { algorithm, blob },
    })
}

impl Entry {
    fn matches(&self, name: &str) -> bool {
        super::config::list_matches(&self.patterns, |pattern| pattern_matches(pattern, name))
    }
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("|1|") {
        Some(hashed) => hashed_matches(hashed, name),
        None => super::config::glob(pattern, name),
    }
}

/// Salt length of hashed names: SHA-1's output size, as OpenSSH uses.
const SALT_LEN: usize = 20;

/// `name` hashed with `salt`, as `HashKnownHosts yes` and `ssh-keygen -H`
/// write it.
#[must_use]
pub fn hashed_name(name: &str, salt: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    let tag = hmac::sign(&key, name.as_bytes());
    format!(
        "|1|{}|{}",
        STANDARD.encode(salt),
        STANDARD.encode(tag.as_ref())
    )
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as HashKnownHosts writes.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> HostKey {
        HostKey {
            algorithm: "ssh-ed25519".into(),
            blob: vec![seed; 51],
        }
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        hashed_name(name, salt)
    }

    fn file(lines: &[String]) -> KnownHosts {
        KnownHosts::parse(&lines.join("\n"), Path::new("known_hosts"))
    }

    #[test]
    fn plain_port_and_hashed_entries() {
        let kh = file(&[
            "# comment".into(),
            format!("web1,10.0.0.1 {}", key(1).to_openssh()),
            format!("[web1]:2222 {}", key(2).to_openssh()),
            format!(
                "{} {}",
                hashed("db1", b"0123456789abcdefghij"),
                key(3).to_openssh()
            ),
            format!(
                "{} {} comment",
                hashed("[db1]:2200", b"saltsaltsaltsaltsalt"),
                key(4).to_openssh()
            ),
        ]);
        assert_eq!(kh.check("web1", 22, &key(1)), Verdict::Known { line: 2 });
        assert_eq!(
            kh.check("10.0.0.1", 22, &key(1)),
            Verdict::Known { line: 2 }
        );
        assert_eq!(kh.check("web1", 2222, &key(2)), Verdict::Known { line: 3 });
        assert_eq!(kh.check("db1", 22, &key(3)), Verdict::Known { line: 4 });
        assert_eq!(kh.check("db1", 2200, &key(4)), Verdict::Known { line: 5 });
        assert_eq!(kh.check("web2", 22, &key(1)), Verdict::Unknown);
        assert_eq!(
            kh.check("web1", 2200, &key(1)),
            Verdict::Unknown,
            "other port, other host"
        );
    }

    #[test]
    fn a_different_key_is_a_change_with_the_line_to_look_at() {
        let kh = file(&[format!("web1 {}", key(1).to_openssh())]);
        assert_eq!(
            kh.check("web1", 22, &key(9)),
            Verdict::Changed {
                line: 1,
                expected: key(1)
            }
        );
    }

    #[test]
    fn any_matching_entry_makes_the_key_known() {
        // Two keys listed for one host (rotation): either is fine.
        let kh = file(&[
            format!("web1 {}", key(1).to_openssh()),
            format!("web1 {}", key(2).to_openssh()),
        ]);
        assert_eq!(kh.check("web1", 22, &key(2)), Verdict::Known { line: 2 });
    }

    #[test]
    fn revoked_keys_and_negated_patterns() {
        let kh = file(&[
            format!("@revoked * {}", key(5).to_openssh()),
            format!("*.lab,!evil.lab {}", key(6).to_openssh()),
        ]);
        assert_eq!(
            kh.check("anything", 22, &key(5)),
            Verdict::Revoked { line: 1 }
        );
        assert_eq!(kh.check("db.lab", 22, &key(6)), Verdict::Known { line: 2 });
        assert_eq!(kh.check("evil.lab", 22, &key(6)), Verdict::Unknown);
    }

    #[test]
    fn learning_appends_openssh_format_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/known_hosts");
        let mut kh = KnownHosts::load(&path).unwrap();
        kh.learn(&host_name("127.0.0.10", 2222), &key(7), false)
            .unwrap();
        kh.learn(&host_name("127.0.0.11", 22), &key(8), false)
            .unwrap();
        assert_eq!(
            kh.check("127.0.0.10", 2222, &key(7)),
            Verdict::Known { line: 1 }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "[127.0.0.10]:2222 {}\n127.0.0.11 {}\n",
                key(7).to_openssh(),
                key(8).to_openssh()
            )
        );
        let reread = KnownHosts::load(&path).unwrap();
        assert_eq!(
            reread.check("127.0.0.11", 22, &key(8)),
            Verdict::Known { line: 2 }
        );
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn learning_hashed_hides_the_name_and_still_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut kh = KnownHosts::load(&path).unwrap();
        kh.learn("[127.12.0.10]:2222", &key(7), true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("|1|") && !text.contains("127.12"),
            "{text}"
        );
        let reread = KnownHosts::load(&path).unwrap();
        assert_eq!(
            reread.check("127.12.0.10", 2222, &key(7)),
            Verdict::Known { line: 1 }
        );
        assert_eq!(reread.check("127.12.0.10", 22, &key(7)), Verdict::Unknown);
        // Two learned names never share a salt.
        kh.learn("[127.12.0.10]:2222", &key(8), true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let salts: Vec<&str> = text.lines().map(|l| &l[..32]).collect();
        assert_ne!(salts[0], salts[1]);
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // ssh-keygen -lf of this public key prints this fingerprint.
        let key = HostKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF2rkZDTOlq5fOYUxj/7qwBSBAXUzhOXgLMzy60AXhfa test",
        )
        .unwrap();
        assert_eq!(
            key.fingerprint(),
            "SHA256:+ZgSTEZoYSSf+t2KGGWU81IP40vyd2FzxufR4xMf8k0"
        );
    }
}
