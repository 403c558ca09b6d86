//! Tokens: JWTs signed with Ed25519 (EdDSA). The control plane holds the
//! signing key; agents hold only the public key, which verifies operator
//! tokens.
//!
//! Three audiences: `fleet-join` (minutes, one use, bound to a host),
//! `fleet-agent` (an agent's identity, sub = agent id) and `fleet-operator`
//! (the console and CLI). Validation has no leeway: lifetimes are seconds
//! in tests, and the fleet's clocks are expected to agree.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const KEY_FILE: &str = "token.key";
/// Every token names its issuer; a token from anything else is refused.
/// How far behind ours another host's clock may run and still accept a
/// token we just issued.
const CLOCK_SKEW_SECS: i64 = 60;
const ISSUER: &str = "fleetctl";

/// Who a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// An agent's one-use ticket to register.
    Join,
    /// An agent's identity.
    Agent,
    /// The console and the CLI.
    Operator,
}

impl Audience {
    /// The `aud` claim.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "fleet-join",
            Self::Agent => "fleet-agent",
            Self::Operator => "fleet-operator",
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The agent id (Agent), the operator's name (Operator), the host (Join).
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token: join tokens are refused once their jti is used.
    pub jti: String,
    /// The host a join token is bound to.
    #[serde(default)]
    pub host: Option<String>,
}

/// Why the signing key could not be loaded, or a token made.
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
    #[error("the token verification key is not an Ed25519 public key in PEM form: {0}")]
    BadPublicKey(String),
    #[error(
        "no token signing key at {}: start `fleetctl serve` once with this data dir, or use the data dir it uses",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("cannot make a token: {0}")]
    Sign(String),
}

/// Why a token was refused. Callers turn each into a status and a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token's signature does not verify (it was not issued by this control plane)")]
    BadSignature,
    #[error("the token is malformed")]
    Malformed,
}

impl TokenError {
    /// The stable code an [`crate::model::control::ApiError`] carries.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::BadSignature => "bad_signature",
            Self::Malformed => "malformed_token",
        }
    }
}

/// Holds the signing key: `token.key` (PKCS#8 PEM, mode 0600) in a
/// directory, created on first start, never regenerated silently.
pub struct TokenIssuer {
    encoding: EncodingKey,
    public_pem: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Loads `dir/token.key`, creating it when absent: for the control
    /// plane itself, which owns the key.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        Self::open(dir, true)
    }

    /// Loads an existing `dir/token.key`: for the CLI and the console, which
    /// mint tokens with the key a control plane serves with and must never
    /// make one nobody serves with.
    pub fn load(dir: &Path) -> Result<Self, AuthError> {
        Self::open(dir, false)
    }

    fn open(dir: &Path, create: bool) -> Result<Self, AuthError> {
        let path = dir.join(KEY_FILE);
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                Self::create(dir, &path)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::NoKey { path });
            }
            Err(source) => return Err(AuthError::Read { path, source }),
        };
        let bad = |reason: String| AuthError::BadKey {
            path: path.clone(),
            reason,
        };
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        if key.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(bad("it is a key of another kind".into()));
        }
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            encoding,
            public_pem: key.public_key_pem(),
        })
    }

    fn create(dir: &Path, path: &Path) -> Result<String, AuthError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let write_err = |source| AuthError::Write {
            path: path.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_err)?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| AuthError::Sign(e.to_string()))?;
        let pem = key.serialize_pem();
        crate::pki::write_private(path, pem.as_bytes()).map_err(write_err)?;
        tracing::info!(path = %path.display(), "created a new token signing key");
        Ok(pem)
    }

    /// A signed token for `aud`, valid from now for `ttl`. `sub` is the
    /// agent id (Agent), the operator's name (Operator) or the host (Join);
    /// `host` binds a join token to the host it was made for.
    pub fn issue(
        &self,
        aud: Audience,
        sub: &str,
        host: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, Claims), AuthError> {
        let now = unix_now();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: sub.to_owned(),
            aud: aud.as_str().to_owned(),
            iat: now,
            // Backdated so a receiver whose clock runs a little behind ours
            // accepts a fresh token; expiry keeps no leeway.
            nbf: now.saturating_sub(CLOCK_SKEW_SECS),
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: format!("{:032x}", rand::random::<u128>()),
            host: host.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// The public key (SPKI PEM): what agents verify operator tokens with.
    #[must_use]
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// A verifier for the tokens this issuer makes.
    ///
    /// # Panics
    /// Never: the public key PEM comes from a key that parsed.
    #[must_use]
    pub fn verifier(&self) -> TokenVerifier {
        // The PEM came from a key that just parsed; it parses back.
        TokenVerifier::from_public_pem(&self.public_pem)
            .expect("an Ed25519 public key PEM from rcgen is valid")
    }
}

/// Verifies tokens with the public key only (what agents hold).
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for the Ed25519 public key in `pem` (SPKI).
    pub fn from_public_pem(pem: &str) -> Result<Self, AuthError> {
        DecodingKey::from_ed_pem(pem.as_bytes())
            .map(|key| Self { key })
            .map_err(|e| AuthError::BadPublicKey(e.to_string()))
    }

    /// The claims of `token` when it is signed by this key, for `aud`, from
    /// this issuer, and inside its lifetime (no leeway).
    pub fn verify(&self, token: &str, aud: Audience) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_audience(&[aud.as_str()]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                _ => TokenError::Malformed,
            })
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn issuer() -> (tempfile::TempDir, TokenIssuer) {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
        (dir, issuer)
    }

    #[test]
    fn issued_tokens_verify_with_the_public_key_alone() {
        let (_dir, issuer) = issuer();
        let verifier = TokenVerifier::from_public_pem(issuer.public_key_pem()).unwrap();
        let (token, claims) = issuer
            .issue(Audience::Join, "web1", Some("web1"), Duration::from_mins(1))
            .unwrap();
        let got = verifier.verify(&token, Audience::Join).unwrap();
        assert_eq!(got, claims);
        assert_eq!(got.aud, "fleet-join");
        assert_eq!(got.host.as_deref(), Some("web1"));
        assert_eq!(got.exp - got.iat, 60);
        let (other, other_claims) = issuer
            .issue(Audience::Join, "web1", Some("web1"), Duration::from_mins(1))
            .unwrap();
        assert_ne!(other, token);
        assert_ne!(other_claims.jti, claims.jti, "each token has its own jti");
    }

    #[test]
    fn the_key_is_kept_and_private() {
        let (dir, issuer) = issuer();
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TokenIssuer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_key_pem(), issuer.public_key_pem());
        let (token, _) = issuer
            .issue(Audience::Operator, "me", None, Duration::from_mins(1))
            .unwrap();
        assert!(again.verifier().verify(&token, Audience::Operator).is_ok());

        std::fs::write(&path, "garbage").unwrap();
        let err = TokenIssuer::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, AuthError::BadKey { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "garbage",
            "not regenerated"
        );
    }

    #[test]
    fn wrong_audience_is_refused() {
        let (_dir, issuer) = issuer();
        let (token, _) = issuer
            .issue(Audience::Agent, "a1", None, Duration::from_mins(1))
            .unwrap();
        let v = issuer.verifier();
        assert_eq!(
            v.verify(&token, Audience::Operator),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            v.verify(&token, Audience::Join),
            Err(TokenError::WrongAudience)
        );
        assert!(v.verify(&token, Audience::Agent).is_ok());
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let (_a, mine) = issuer();
        let (_b, theirs) = issuer();
        let (token, _) = theirs
            .issue(Audience::Operator, "me", None, Duration::from_mins(1))
            .unwrap();
        assert_eq!(
            mine.verifier().verify(&token, Audience::Operator),
            Err(TokenError::BadSignature)
        );
        // Claims edited under a valid signature.
        let (good, _) = mine
            .issue(Audience::Agent, "a1", None, Duration::from_mins(1))
            .unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            token.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(
            mine.verifier().verify(&forged, Audience::Operator),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let (_dir, issuer) = issuer();
        for junk in ["", "abc", "a.b.c", "Bearer x.y.z"] {
            assert_eq!(
                issuer.verifier().verify(junk, Audience::Agent),
                Err(TokenError::Malformed),
                "{junk:?}"
            );
        }
        assert!(TokenVerifier::from_public_pem("nope").is_err());
    }

    #[test]
    fn load_never_makes_a_key_only_the_control_plane_does() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            TokenIssuer::load(dir.path()),
            Err(AuthError::NoKey { .. })
        ));
        assert!(!dir.path().join(KEY_FILE).exists());
        let owner = TokenIssuer::load_or_create(dir.path()).unwrap();
        let reader = TokenIssuer::load(dir.path()).unwrap();
        assert_eq!(reader.public_key_pem(), owner.public_key_pem());
    }

    #[test]
    fn expired_with_no_leeway() {
        let (_dir, issuer) = issuer();
        let (token, claims) = issuer
            .issue(Audience::Agent, "a1", None, Duration::from_secs(1))
            .unwrap();
        // Valid through its exp second; refused from the next one on.
        while unix_now() <= claims.exp {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            issuer.verifier().verify(&token, Audience::Agent),
            Err(TokenError::Expired)
        );
        let (zero, _) = issuer
            .issue(Audience::Agent, "a1", None, Duration::ZERO)
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            issuer.verifier().verify(&zero, Audience::Agent),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(TokenError::Expired.code(), "token_expired");
        assert_eq!(TokenError::NotYetValid.code(), "token_not_yet_valid");
        assert_eq!(TokenError::WrongAudience.code(), "wrong_audience");
        assert_eq!(TokenError::BadSignature.code(), "bad_signature");
        assert_eq!(TokenError::Malformed.code(), "malformed_token");
    }
}
