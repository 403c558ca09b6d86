//! What checks the stats tokens an agent is shown, as the control plane
//! last said: its token keys, the revoked token ids and the lifetime cap;
//! and the check itself, which the stats API runs on every request.

use std::collections::HashSet;
use std::time::Duration;

use crate::auth::{Audience, TokenError, TokenVerifier, stats_audience_for};
use crate::model::control::TrustUpdate;

/// The keys, revocations and cap, and this agent's id (a per-agent token
/// must name it).
#[derive(Debug)]
pub struct StatsTrust {
    verifier: TokenVerifier,
    revoked: HashSet<String>,
    max_ttl: Duration,
    agent_id: String,
}

impl StatsTrust {
    /// What `update` says, for the agent `agent_id`. Keys that do not
    /// parse (or whose kid names another key) refuse the whole update.
    pub fn from_update(update: &TrustUpdate, agent_id: &str) -> Result<Self, String> {
        if update.token_keys.is_empty() {
            return Err("no token keys at all".into());
        }
        Ok(Self {
            verifier: TokenVerifier::from_keys(&update.token_keys).map_err(|e| e.to_string())?,
            revoked: update.revoked_tokens.iter().cloned().collect(),
            max_ttl: Duration::from_secs(update.max_token_ttl_secs),
            agent_id: agent_id.to_owned(),
        })
    }

    /// The key ids it knows.
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        self.verifier.kids()
    }

    /// How many token ids it knows to be revoked.
    #[must_use]
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// Whether `token` may read this agent's stats: a stats token for the
    /// whole fleet or for this agent alone, signed by a known key, not
    /// revoked, living no longer than the cap.
    pub fn check(&self, token: &str) -> Result<(), TokenError> {
        let own = stats_audience_for(&self.agent_id);
        let claims = self
            .verifier
            .verify_for(token, &[Audience::Stats.as_str(), &own])?;
        if self.revoked.contains(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        if claims.lifetime() > self.max_ttl {
            return Err(TokenError::TooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenIssuer;

    const MIN: Duration = Duration::from_mins(1);

    fn setup() -> (tempfile::TempDir, TokenIssuer, TrustUpdate) {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
        let update = TrustUpdate {
            token_keys: issuer.key_set().to_vec(),
            revoked_tokens: Vec::new(),
            max_token_ttl_secs: 3600,
        };
        (dir, issuer, update)
    }

    #[test]
    fn stats_tokens_for_the_fleet_or_this_agent_only() {
        let (_dir, issuer, update) = setup();
        let trust = StatsTrust::from_update(&update, "ag-1").unwrap();
        let (fleet, _) = issuer.issue(Audience::Stats, "prometheus", MIN).unwrap();
        let (mine, _) = issuer.issue_stats_for("ag-1", "console", MIN).unwrap();
        let (theirs, _) = issuer.issue_stats_for("ag-2", "console", MIN).unwrap();
        let (operator, _) = issuer.issue(Audience::Operator, "me", MIN).unwrap();
        let (sd, _) = issuer.issue(Audience::Sd, "prometheus", MIN).unwrap();
        assert_eq!(trust.check(&fleet), Ok(()));
        assert_eq!(trust.check(&mine), Ok(()));
        for wrong in [&theirs, &operator, &sd] {
            assert_eq!(trust.check(wrong), Err(TokenError::WrongAudience));
        }
    }

    #[test]
    fn revoked_and_too_long_lived_tokens_are_refused() {
        let (_dir, issuer, mut update) = setup();
        let (revoked, claims) = issuer.issue(Audience::Stats, "p", MIN).unwrap();
        let (long, _) = issuer
            .issue(Audience::Stats, "p", Duration::from_hours(2))
            .unwrap();
        update.revoked_tokens.push(claims.jti);
        let trust = StatsTrust::from_update(&update, "ag-1").unwrap();
        assert_eq!(trust.check(&revoked), Err(TokenError::Revoked));
        assert_eq!(trust.check(&long), Err(TokenError::TooLong));
        assert_eq!(trust.revoked_count(), 1);
    }

    #[test]
    fn a_key_it_has_not_heard_of_is_refused_until_it_has() {
        let (dir, issuer, update) = setup();
        let before = StatsTrust::from_update(&update, "ag-1").unwrap();
        TokenIssuer::rotate(dir.path(), Duration::ZERO, MIN, false).unwrap();
        let rotated = TokenIssuer::load(dir.path()).unwrap();
        let (token, _) = rotated.issue(Audience::Stats, "p", MIN).unwrap();
        assert_eq!(before.check(&token), Err(TokenError::UnknownKey));
        let after = TrustUpdate {
            token_keys: rotated.key_set().to_vec(),
            ..update
        };
        let after = StatsTrust::from_update(&after, "ag-1").unwrap();
        assert_eq!(after.check(&token), Ok(()));
        let (old, _) = issuer.issue(Audience::Stats, "p", MIN).unwrap();
        assert_eq!(after.check(&old), Ok(()), "the old key still verifies");
        let empty = TrustUpdate {
            token_keys: Vec::new(),
            ..TrustUpdate::default()
        };
        assert!(
            StatsTrust::from_update(&empty, "ag-1").is_err(),
            "an empty key set is refused, the old one kept"
        );
    }
}
