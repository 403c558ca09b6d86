//! The control plane's keys as its clients on the same machine hold them
//! (the console, `fleetctl deploy`, `fleetctl revoke`): the fleet CA they
//! trust, the pin they check the control plane by, and tokens minted with
//! its signing key. Read from its key directory, never created there: a
//! key the control plane does not serve with would mint tokens nobody
//! accepts.
//!
//! Token minting stays behind this module: callers say which token they
//! need, not how tokens are made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{Audience, AuthError, JoinGrant, TokenIssuer};
use crate::pki::{ControlPin, PkiError};

/// Why the keys could not be read or a token made.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// No signing key in the directory: no control plane ever ran with it.
    /// The operator named the wrong data dir (or none).
    #[error(
        "no token signing key at {}: start `fleetctl serve` once with this data dir, or use the data dir it uses",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("cannot load the token signing key: {0}")]
    Key(AuthError),
    #[error("cannot read the {what} {} (start `fleetctl serve` once with this data dir): {cause}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} is damaged: {cause}", path.display())]
    Damaged { path: PathBuf, cause: PkiError },
    #[error("cannot mint a token: {0}")]
    Mint(AuthError),
}

/// What a client holds of the control plane whose key directory is here.
#[derive(Debug)]
pub struct LocalKeys {
    issuer: TokenIssuer,
    ca_pem: String,
    pin: ControlPin,
}

impl LocalKeys {
    /// Reads the keys in `dir` (blocking: call it off the async threads).
    pub fn load(dir: &Path) -> Result<Self, KeysError> {
        let issuer = TokenIssuer::load(dir).map_err(|e| match e {
            AuthError::NoKey { path } => KeysError::NoKey { path },
            other => KeysError::Key(other),
        })?;
        let read = |what, name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|cause| KeysError::Read { what, path, cause })
        };
        let ca_pem = read("fleet CA", "ca.pem")?;
        let control_ca = read("control plane CA", "control-ca.pem")?;
        let pin = ControlPin::of_cert_pem(&control_ca).map_err(|cause| KeysError::Damaged {
            path: dir.join("control-ca.pem"),
            cause,
        })?;
        Ok(Self {
            issuer,
            ca_pem,
            pin,
        })
    }

    /// Keys made here, for tests: the issuer and the CA given.
    #[must_use]
    pub fn new(issuer: TokenIssuer, ca_pem: String, pin: ControlPin) -> Self {
        Self {
            issuer,
            ca_pem,
            pin,
        }
    }

    /// What changes when the signing keys change (a rotation): reload then.
    #[must_use]
    pub fn stamp(dir: &Path) -> Vec<Option<(u64, std::time::SystemTime)>> {
        TokenIssuer::stamp(dir)
    }

    /// The id of the key that signs now.
    #[must_use]
    pub fn signing_kid(&self) -> &str {
        self.issuer.signing_kid()
    }

    /// The fleet CA (PEM): the only root its clients trust.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The control plane's pin: checked beyond the fleet CA on every call.
    #[must_use]
    pub fn pin(&self) -> ControlPin {
        self.pin
    }

    /// An operator token for the control plane's API, naming `who`.
    pub fn operator_token(&self, who: &str, ttl: Duration) -> Result<String, KeysError> {
        self.issuer
            .issue(Audience::Operator, who, ttl)
            .map(|(token, _)| token)
            .map_err(KeysError::Mint)
    }

    /// A stats token only the agent `agent_id` accepts.
    pub fn stats_token_for(
        &self,
        agent_id: &str,
        who: &str,
        ttl: Duration,
    ) -> Result<String, KeysError> {
        self.issuer
            .issue_stats_for(agent_id, who, ttl)
            .map(|(token, _)| token)
            .map_err(KeysError::Mint)
    }

    /// A one-use join token bound to `host`, vouching for it and `names`
    /// (in that order) and carrying the control plane's pin.
    pub fn join_token(
        &self,
        host: &str,
        names: &[String],
        ttl: Duration,
    ) -> Result<String, KeysError> {
        let grant = JoinGrant {
            host: host.to_owned(),
            names: names.to_vec(),
            control_pin: Some(self.pin.to_string()),
        };
        self.issuer
            .issue_join(&grant, ttl)
            .map(|(token, _)| token)
            .map_err(KeysError::Mint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::stats_audience_for;

    #[test]
    fn keys_are_read_never_made_and_mint_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = LocalKeys::load(dir.path()).unwrap_err();
        assert!(matches!(missing, KeysError::NoKey { .. }), "{missing}");
        assert!(!dir.path().join("token.key").exists(), "nothing created");

        let ca = crate::pki::FleetCa::load_or_create(dir.path()).unwrap();
        let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
        let verifier = issuer.verifier();
        let keys = LocalKeys::load(dir.path()).unwrap();
        assert_eq!(keys.pin(), ca.control_pin());
        assert_eq!(keys.ca_pem(), ca.ca_pem());

        let op = keys.operator_token("t", Duration::from_mins(1)).unwrap();
        assert!(verifier.verify(&op, Audience::Operator).is_ok());
        let stats = keys
            .stats_token_for("ag-1", "t", Duration::from_mins(1))
            .unwrap();
        let own = stats_audience_for("ag-1");
        assert!(verifier.verify_for(&stats, &[&own]).is_ok());
        assert!(verifier.verify(&stats, Audience::Operator).is_err());
        let join = keys
            .join_token("127.9.0.5", &["web1".into()], Duration::from_mins(1))
            .unwrap();
        let claims = verifier.verify(&join, Audience::Join).unwrap();
        assert_eq!(claims.host.as_deref(), Some("127.9.0.5"));
        assert_eq!(claims.control_pin, Some(ca.control_pin().to_string()));
    }
}
