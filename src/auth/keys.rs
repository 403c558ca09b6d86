//! The token signing keys, in the control dir:
//!
//! ```text
//!  token.key         the key that signs now (PKCS#8 PEM, 0600)
//!  token.next.key    during a rotation: the next key, published before it
//!                    signs, so every agent knows it first (0600)
//!  token-keys.json   the public key set: every key whose tokens may still
//!                    be valid, when it signs from and verifies until (0600)
//! ```
//! A key's `kid` is derived from the key itself (a hash of its public
//! half), so every process and every replica sharing the directory names
//! it the same way with nothing more to agree on.
//!
//! Rotation ([`TokenIssuer::rotate`]): a new key is published now and signs
//! from `now + publish_for` (two heartbeat intervals by default: every
//! agent has heard of it before any token it signs reaches one); the old
//! key goes on verifying until every token it signed has expired, then
//! leaves the set. The old private key is removed when the new one takes
//! over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::PublicKeyData as _;
use serde::{Deserialize, Serialize};

use super::{Audience, CLOCK_SKEW_SECS, Claims, ISSUER, JoinGrant, TokenVerifier, unix_now};
use crate::model::control::TokenKey;

const KEY_FILE: &str = "token.key";
const NEXT_KEY_FILE: &str = "token.next.key";
const KEY_SET_FILE: &str = "token-keys.json";

/// Why the signing keys could not be loaded, rotated, or a token made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the token signing key {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the token signing key {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not an Ed25519 private key ({reason}); restore it from a backup, or move it away \
         to make a new one (every token issued so far then stops working)",
        path.display()
    )]
    BadKey { path: PathBuf, reason: String },
    #[error("{} is damaged ({reason}); restore it from a backup", path.display())]
    BadKeySet { path: PathBuf, reason: String },
    #[error("the token verification key is not an Ed25519 public key in PEM form: {0}")]
    BadPublicKey(String),
    #[error(
        "no token signing key at {}: start `fleetctl serve` once with this data dir, or use the data dir it uses",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "a rotation is under way: key {kid} starts signing at {signs_from} (Unix time); rotate again after that, or pass --now"
    )]
    RotationUnderWay { kid: String, signs_from: i64 },
    #[error("cannot make a token: {0}")]
    Sign(String),
}

/// One private key and its name.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_pem: String,
}

/// An entry of `token-keys.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyEntry {
    kid: String,
    public_key_pem: String,
    /// Unix seconds from which it signs.
    signs_from: i64,
    /// Unix seconds until which tokens it signed may be valid; none while
    /// it is the newest key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_until: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeySetFile {
    keys: Vec<KeyEntry>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub new_kid: String,
    /// Unix seconds: when the new key starts signing.
    pub signs_from: i64,
    pub old_kid: String,
    /// Unix seconds: until when the old key's tokens verify (`None`: dropped now).
    pub old_verify_until: Option<i64>,
}

/// The signing keys of one control dir, and the public key set they make.
pub struct TokenIssuer {
    current: SigningKey,
    next: Option<(SigningKey, i64)>,
    published: Vec<TokenKey>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.current.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Loads the keys in `dir`, creating `token.key` when absent: for the
    /// control plane itself, which owns the keys.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            create_dir(dir, &path)?;
            let pem = new_key_pem()?;
            crate::pki::write_private(&path, pem.as_bytes()).map_err(|source| {
                AuthError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
            tracing::info!(path = %path.display(), "created a new token signing key");
        }
        Self::load(dir)
    }

    /// Loads the existing keys in `dir`: for the CLI and the console, which
    /// mint tokens with the keys a control plane serves with and must never
    /// make one nobody serves with.
    pub fn load(dir: &Path) -> Result<Self, AuthError> {
        let path = dir.join(KEY_FILE);
        let current = match std::fs::read_to_string(&path) {
            Ok(pem) => signing_key(&pem, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::NoKey { path });
            }
            Err(source) => return Err(AuthError::Read { path, source }),
        };
        let entries = read_key_set(dir)?.keys;
        let next_path = dir.join(NEXT_KEY_FILE);
        let next = match std::fs::read_to_string(&next_path) {
            Ok(pem) => {
                let key = signing_key(&pem, &next_path)?;
                // A next key the set does not list (a crash mid-rotation) signs at once.
                let from = entries
                    .iter()
                    .find(|e| e.kid == key.kid)
                    .map_or(0, |e| e.signs_from);
                Some((key, from))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(AuthError::Read {
                    path: next_path,
                    source,
                });
            }
        };
        let now = unix_now();
        let mut published: Vec<TokenKey> = Vec::new();
        let mut publish = |kid: &str, pem: &str| {
            if !published.iter().any(|k| k.kid == kid) {
                published.push(TokenKey {
                    kid: kid.to_owned(),
                    public_key_pem: pem.to_owned(),
                });
            }
        };
        publish(&current.kid, &current.public_pem);
        if let Some((next, _)) = &next {
            publish(&next.kid, &next.public_pem);
        }
        for entry in &entries {
            if entry.verify_until.is_none_or(|until| until > now) {
                publish(&entry.kid, &entry.public_key_pem);
            }
        }
        Ok(Self {
            current,
            next,
            published,
        })
    }

    /// The key that signs at `now`: the next one once its time has come.
    fn signer(&self, now: i64) -> &SigningKey {
        match &self.next {
            Some((next, from)) if now >= *from => next,
            _ => &self.current,
        }
    }

    /// The kid of the key that signs now.
    #[must_use]
    pub fn signing_kid(&self) -> &str {
        &self.signer(unix_now()).kid
    }

    fn sign(&self, claims: &Claims, now: i64) -> Result<String, AuthError> {
        let key = self.signer(now);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    fn claims(aud: String, sub: &str, ttl: Duration, now: i64) -> Claims {
        Claims {
            iss: ISSUER.to_owned(),
            sub: sub.to_owned(),
            aud,
            iat: now,
            // Backdated so a receiver whose clock runs a little behind ours
            // accepts a fresh token; expiry keeps no leeway.
            nbf: now.saturating_sub(CLOCK_SKEW_SECS),
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: format!("{:032x}", rand::random::<u128>()),
            host: None,
            names: Vec::new(),
            control_pin: None,
        }
    }

    /// A signed token for `aud`, valid from now for `ttl`. `sub` is the
    /// agent id (Agent) or who the token is for (Operator, Stats, Sd).
    /// Join tokens come from [`Self::issue_join`].
    pub fn issue(
        &self,
        aud: Audience,
        sub: &str,
        ttl: Duration,
    ) -> Result<(String, Claims), AuthError> {
        let now = unix_now();
        let claims = Self::claims(aud.as_str().to_owned(), sub, ttl, now);
        Ok((self.sign(&claims, now)?, claims))
    }

    /// A stats token only `agent_id` accepts (the console's, one per agent):
    /// what one host sees is worthless on every other host.
    pub fn issue_stats_for(
        &self,
        agent_id: &str,
        sub: &str,
        ttl: Duration,
    ) -> Result<(String, Claims), AuthError> {
        let now = unix_now();
        let claims = Self::claims(super::stats_audience_for(agent_id), sub, ttl, now);
        Ok((self.sign(&claims, now)?, claims))
    }

    /// A one-use join token bound to `grant.host`, vouching for its names
    /// and carrying the control plane's pin.
    pub fn issue_join(
        &self,
        grant: &JoinGrant,
        ttl: Duration,
    ) -> Result<(String, Claims), AuthError> {
        let now = unix_now();
        let mut claims = Self::claims(Audience::Join.as_str().to_owned(), &grant.host, ttl, now);
        claims.host = Some(grant.host.clone());
        claims.names = grant.vouched();
        claims.control_pin.clone_from(&grant.control_pin);
        Ok((self.sign(&claims, now)?, claims))
    }

    /// The public key set: every key a valid token may be signed with.
    #[must_use]
    pub fn key_set(&self) -> &[TokenKey] {
        &self.published
    }

    /// The public key of the key that signs now (SPKI PEM).
    #[must_use]
    pub fn public_key_pem(&self) -> &str {
        &self.signer(unix_now()).public_pem
    }

    /// A verifier for every key of the set.
    ///
    /// # Panics
    /// Never: every key of the set parsed when it was loaded.
    #[must_use]
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_keys(&self.published).expect("the key set's keys parsed when loaded")
    }

    /// Makes a new signing key in `dir`. It is published at once and signs
    /// from `now + publish_for`; the old key verifies for `max_token_life`
    /// after that (the longest any token it signed may live), unless
    /// `drop_old`, which stops it verifying at once (for a stolen key:
    /// every token it signed, agents' identities included, stops working)
    /// and implies signing at once.
    pub fn rotate(
        dir: &Path,
        publish_for: Duration,
        max_token_life: Duration,
        drop_old: bool,
    ) -> Result<Rotation, AuthError> {
        let publish_for = if drop_old {
            Duration::ZERO
        } else {
            publish_for
        };
        Self::promote_if_due(dir)?;
        let issuer = Self::load(dir)?;
        let now = unix_now();
        if let Some((next, from)) = &issuer.next
            && !publish_for.is_zero()
        {
            return Err(AuthError::RotationUnderWay {
                kid: next.kid.clone(),
                signs_from: *from,
            });
        }
        let pem = new_key_pem()?;
        let new = signing_key(&pem, &dir.join(NEXT_KEY_FILE))?;
        let signs_from = now.saturating_add(secs(publish_for));
        let old_verify_until = (!drop_old).then(|| signs_from.saturating_add(secs(max_token_life)));

        let mut set = read_key_set(dir)?;
        // A pending key replaced by --now never signed anything: drop it.
        if let Some((pending, _)) = &issuer.next {
            set.keys.retain(|e| e.kid != pending.kid);
        }
        let old = &issuer.current;
        if !set.keys.iter().any(|e| e.kid == old.kid) {
            set.keys.push(KeyEntry {
                kid: old.kid.clone(),
                public_key_pem: old.public_pem.clone(),
                signs_from: 0,
                verify_until: None,
            });
        }
        for entry in &mut set.keys {
            if entry.verify_until.is_none() {
                entry.verify_until = Some(old_verify_until.unwrap_or(now));
            }
        }
        set.keys
            .retain(|e| e.verify_until.is_none_or(|until| until > now));
        set.keys.push(KeyEntry {
            kid: new.kid.clone(),
            public_key_pem: new.public_pem.clone(),
            signs_from,
            verify_until: None,
        });
        // The set first: a key that signs is always published.
        write_key_set(dir, &set)?;
        let target = if publish_for.is_zero() {
            let _ = std::fs::remove_file(dir.join(NEXT_KEY_FILE));
            dir.join(KEY_FILE)
        } else {
            dir.join(NEXT_KEY_FILE)
        };
        crate::pki::write_private(&target, pem.as_bytes()).map_err(|source| AuthError::Write {
            path: target.clone(),
            source,
        })?;
        tracing::info!(
            new = new.kid,
            old = old.kid,
            signs_from,
            "token signing key rotated"
        );
        Ok(Rotation {
            new_kid: new.kid,
            signs_from,
            old_kid: old.kid.clone(),
            old_verify_until,
        })
    }

    /// Once the next key signs, it becomes `token.key` (the old private key
    /// is gone). Returns the kid that took over, if one did. Safe to race:
    /// the rename is atomic, and a second one finds nothing to move.
    pub fn promote_if_due(dir: &Path) -> Result<Option<String>, AuthError> {
        let next_path = dir.join(NEXT_KEY_FILE);
        let pem = match std::fs::read_to_string(&next_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AuthError::Read {
                    path: next_path,
                    source,
                });
            }
        };
        let key = signing_key(&pem, &next_path)?;
        let set = read_key_set(dir)?;
        let from = set
            .keys
            .iter()
            .find(|e| e.kid == key.kid)
            .map_or(0, |e| e.signs_from);
        if unix_now() < from {
            return Ok(None);
        }
        match std::fs::rename(&next_path, dir.join(KEY_FILE)) {
            Ok(()) => {
                tracing::info!(kid = key.kid, "the next token signing key now signs");
                Ok(Some(key.kid))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AuthError::Write {
                path: dir.join(KEY_FILE),
                source,
            }),
        }
    }

    /// What changes when any key file changes (size and modification time
    /// of each): a control plane reloads its keys when this does.
    #[must_use]
    pub fn stamp(dir: &Path) -> Vec<Option<(u64, std::time::SystemTime)>> {
        [KEY_FILE, NEXT_KEY_FILE, KEY_SET_FILE]
            .iter()
            .map(|name| {
                std::fs::metadata(dir.join(name))
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)))
            })
            .collect()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn create_dir(dir: &Path, path: &Path) -> Result<(), AuthError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AuthError::Write {
            path: path.to_owned(),
            source,
        })
}

fn new_key_pem() -> Result<String, AuthError> {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map(|k| k.serialize_pem())
        .map_err(|e| AuthError::Sign(e.to_string()))
}

fn signing_key(pem: &str, path: &Path) -> Result<SigningKey, AuthError> {
    let bad = |reason: String| AuthError::BadKey {
        path: path.to_owned(),
        reason,
    };
    let key = rcgen::KeyPair::from_pem(pem).map_err(|e| bad(e.to_string()))?;
    if key.algorithm() != &rcgen::PKCS_ED25519 {
        return Err(bad("it is a key of another kind".into()));
    }
    let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    Ok(SigningKey {
        kid: kid_of_der(&key.subject_public_key_info()),
        encoding,
        public_pem: key.public_key_pem(),
    })
}

/// The kid of a public key: the first 8 bytes of the SHA-256 of its SPKI
/// DER, in hex.
fn kid_of_der(spki_der: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    digest.as_ref()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The kid of an SPKI PEM public key.
pub(super) fn kid_of_public_pem(pem: &str) -> Result<String, AuthError> {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| AuthError::BadPublicKey(e.to_string()))?;
    Ok(kid_of_der(der.as_ref()))
}

fn read_key_set(dir: &Path) -> Result<KeySetFile, AuthError> {
    let path = dir.join(KEY_SET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| AuthError::BadKeySet {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeySetFile::default()),
        Err(source) => Err(AuthError::Read { path, source }),
    }
}

fn write_key_set(dir: &Path, set: &KeySetFile) -> Result<(), AuthError> {
    let path = dir.join(KEY_SET_FILE);
    let json = serde_json::to_vec_pretty(set).map_err(|e| AuthError::Sign(e.to_string()))?;
    crate::pki::write_private(&path, &json).map_err(|source| AuthError::Write { path, source })
}
