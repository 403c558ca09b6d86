//! Authentication in OpenSSH's order: ssh-agent keys, then identity files
//! (asking for passphrases), then a password (asked for).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};

use super::error::SshError;
use super::prompt::Prompter;
use super::target::SshTarget;
use super::verify::Verifier;

/// How many times to ask for a passphrase or password, as OpenSSH's
/// NumberOfPasswordPrompts.
const PROMPTS: usize = 3;

pub(super) async fn authenticate(
    handle: &mut Handle<Verifier>,
    target: &SshTarget,
    host: &str,
    prompter: &dyn Prompter,
    timeout: Duration,
) -> Result<(), SshError> {
    let mut tried: Vec<String> = Vec::new();
    let user = target.user.as_str();
    let mut remaining: Option<MethodSet> = None;
    let protocol = |e: &dyn std::fmt::Display| SshError::Protocol {
        host: host.to_string(),
        reason: format!("during authentication: {e}"),
    };

    // Public halves of the configured identities, for IdentitiesOnly.
    let allowed: Vec<PublicKey> = target
        .identities
        .iter()
        .filter_map(|p| public_half(p))
        .collect();

    if let Ok(mut agent) = AgentClient::connect_env().await {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let AgentIdentity::PublicKey { key, comment } = identity else {
                continue;
            };
            if target.identities_only && !allowed.iter().any(|a| a.key_data() == key.key_data()) {
                continue;
            }
            tried.push(format!("agent key {comment}"));
            let hash = rsa_hash(handle, &key).await;
            match handle
                .authenticate_publickey_with(user, key, hash, &mut agent)
                .await
            {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure {
                    remaining_methods, ..
                }) => remaining = Some(remaining_methods),
                Err(e) => tracing::debug!(error = %e, "agent could not sign"),
            }
        }
    }

    for path in &target.identities {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Some(key) = load_key(&text, path, prompter).await else {
            continue;
        };
        tried.push(format!("key {}", path.display()));
        let hash = rsa_hash(handle, key.public_key()).await;
        let result = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| protocol(&e))?;
        match result {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure {
                remaining_methods, ..
            } => remaining = Some(remaining_methods),
        }
        if handle.is_closed() {
            break;
        }
    }

    let password_allowed = remaining
        .as_ref()
        .is_none_or(|m| m.contains(&MethodKind::Password));
    if password_allowed && !handle.is_closed() {
        for _ in 0..PROMPTS {
            let Some(password) = tokio::time::timeout(timeout * 30, prompter.password(user, host))
                .await
                .ok()
                .flatten()
            else {
                break;
            };
            if !tried.iter().any(|t| t == "password") {
                tried.push("password".into());
            }
            match handle
                .authenticate_password(user, password)
                .await
                .map_err(|e| protocol(&e))?
            {
                AuthResult::Success => return Ok(()),
                AuthResult::Failure { .. } if handle.is_closed() => break,
                AuthResult::Failure { .. } => {}
            }
        }
    }

    Err(SshError::AuthFailed {
        host: host.to_string(),
        user: user.to_string(),
        tried: if tried.is_empty() {
            "no usable key or password".into()
        } else {
            tried.join(", ")
        },
    })
}

/// Loads a private key, asking for its passphrase when it is encrypted.
async fn load_key(text: &str, path: &Path, prompter: &dyn Prompter) -> Option<PrivateKey> {
    match russh::keys::decode_secret_key(text, None) {
        Ok(key) => return Some(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => {
            tracing::warn!(key = %path.display(), error = %e, "cannot read key; skipping it");
            return None;
        }
    }
    for _ in 0..PROMPTS {
        let passphrase = prompter.passphrase(path).await?;
        match russh::keys::decode_secret_key(text, Some(&passphrase)) {
            Ok(key) => return Some(key),
            Err(e) => tracing::warn!(key = %path.display(), error = %e, "wrong passphrase"),
        }
    }
    None
}

/// The public half of an identity: its `.pub` file, or the key file itself
/// when it is unencrypted.
fn public_half(path: &Path) -> Option<PublicKey> {
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    russh::keys::load_public_key(&pub_path).ok().or_else(|| {
        russh::keys::load_secret_key(path, None)
            .ok()
            .map(|k| k.public_key().clone())
    })
}

/// RSA keys sign with SHA-2 when the server says it can (OpenSSH 8.8+ refuses SHA-1).
async fn rsa_hash(handle: &Handle<Verifier>, key: &PublicKey) -> Option<HashAlg> {
    if !key.algorithm().is_rsa() {
        return None;
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(hash)) => hash,
        _ => Some(HashAlg::Sha256),
    }
}
