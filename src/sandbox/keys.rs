//! Keys of the sandbox: one ed25519 host key per host, made at start, and
//! the demo client key the console logs in with.
//!
//! Ed25519 keys cost one random seed each, so even 200 hosts take well under
//! a millisecond; nothing is cached between runs.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{PrivateKey, PublicKey};

use super::SandboxError;

/// A fresh ed25519 key with `comment`.
pub(super) fn ed25519(comment: &str) -> Result<PrivateKey, SandboxError> {
    let mut seed = [0u8; 32];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| SandboxError::Key {
        reason: "the system random source failed".into(),
    })?;
    let pair = Ed25519Keypair::from_seed(&seed);
    PrivateKey::new(KeypairData::from(pair), comment).map_err(|e| SandboxError::Key {
        reason: e.to_string(),
    })
}

/// The OpenSSH one-line form of a public key (`ssh-ed25519 AAAA… comment`).
pub(super) fn public_line(key: &PublicKey) -> Result<String, SandboxError> {
    key.to_openssh().map_err(|e| SandboxError::Key {
        reason: e.to_string(),
    })
}

/// Writes `key` as an OpenSSH private key file, mode 0600, and its public
/// half next to it as `<path>.pub`.
pub(super) fn write_private(key: &PrivateKey, path: &Path) -> Result<(), SandboxError> {
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SandboxError::Key {
            reason: e.to_string(),
        })?;
    write_file(path, text.as_bytes(), 0o600)?;
    let public = format!("{}\n", public_line(key.public_key())?);
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    write_file(Path::new(&pub_path), public.as_bytes(), 0o644)
}

/// Creates `path` (it must not exist) with `mode` and `bytes`.
pub(super) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SandboxError> {
    let io = |source| SandboxError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_round_trip_through_openssh_text() {
        let a = ed25519("a").unwrap();
        let b = ed25519("b").unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let text = a.to_openssh(LineEnding::LF).unwrap();
        let back = PrivateKey::from_openssh(text.as_bytes()).unwrap();
        assert_eq!(back.public_key(), a.public_key());
        assert!(
            public_line(a.public_key())
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );
    }
}
