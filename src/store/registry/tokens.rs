//! The tokens minted for people and services (`fleetctl token
//! operator|stats|sd`): recorded when minted, listed, and revoked by id.
//! The control plane reads the revoked ones (and tells agents).

use rusqlite::params;

use super::Registry;
use crate::model::control::TokenRecord;
use crate::store::StoreError;

impl Registry {
    /// Records a token minted for a person or a service.
    pub fn record_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO issued_tokens (jti, kind, name, issued_at, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                token.id,
                token.kind,
                token.name,
                token.issued_at,
                token.expires_at,
                token.revoked_at
            ],
        )?;
        Ok(())
    }

    /// The recorded tokens, newest first: those not expired at `now`, or all.
    pub fn tokens(&self, now: i64, all: bool) -> Result<Vec<TokenRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT jti, kind, name, issued_at, expires_at, revoked_at FROM issued_tokens
             WHERE ?2 OR expires_at >= ?1 ORDER BY issued_at DESC, jti",
        )?;
        let rows = stmt.query_map(params![now, all], row_to_token)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes the recorded token whose id is `id` (or starts with it, when
    /// that names one token); `Ok(None)` when none matches, an error naming
    /// the matches when several do. The first revocation's time is kept.
    pub fn revoke_token(
        &mut self,
        id: &str,
        now: i64,
    ) -> Result<Result<TokenRecord, Vec<String>>, StoreError> {
        let pattern = format!("{}%", id.replace(['%', '_'], ""));
        let matches: Vec<TokenRecord> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT jti, kind, name, issued_at, expires_at, revoked_at FROM issued_tokens
                 WHERE jti LIKE ?1 ORDER BY jti",
            )?;
            let rows = stmt.query_map([&pattern], row_to_token)?;
            rows.collect::<Result<_, _>>()?
        };
        let [one] = matches.as_slice() else {
            return Ok(Err(matches.into_iter().map(|t| t.id).collect()));
        };
        self.conn.execute(
            "UPDATE issued_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE jti = ?1",
            params![one.id, now],
        )?;
        Ok(Ok(TokenRecord {
            revoked_at: Some(one.revoked_at.unwrap_or(now)),
            ..one.clone()
        }))
    }

    /// Ids of revoked tokens that have not expired.
    pub fn revoked_tokens(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT jti FROM issued_tokens WHERE revoked_at IS NOT NULL AND expires_at >= ?1",
        )?;
        let rows = stmt.query_map([now], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn row_to_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        issued_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}
