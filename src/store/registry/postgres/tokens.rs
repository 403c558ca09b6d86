//! The tokens minted for people and services, in PostgreSQL: as the
//! SQLite registry's `tokens.rs`, shared by every replica.

use tokio_postgres::Row;

use super::{PgRegistry, pg_error};
use crate::model::control::TokenRecord;
use crate::store::StoreError;

impl PgRegistry {
    pub async fn record_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO issued_tokens (jti, kind, name, issued_at, expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &token.id,
                    &token.kind,
                    &token.name,
                    &token.issued_at,
                    &token.expires_at,
                    &token.revoked_at,
                ],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(())
    }

    pub async fn tokens(&self, now: i64, all: bool) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT jti, kind, name, issued_at, expires_at, revoked_at FROM issued_tokens
                 WHERE $2 OR expires_at >= $1 ORDER BY issued_at DESC, jti",
                &[&now, &all],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(rows.iter().map(row_to_token).collect())
    }

    pub async fn revoke_token(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Result<TokenRecord, Vec<String>>, StoreError> {
        let pattern = format!("{}%", id.replace(['%', '_', '\\'], ""));
        let client = self.client().await?;
        let matches: Vec<TokenRecord> = client
            .query(
                "SELECT jti, kind, name, issued_at, expires_at, revoked_at FROM issued_tokens
                 WHERE jti LIKE $1 ORDER BY jti",
                &[&pattern],
            )
            .await
            .map_err(|e| pg_error(&e))?
            .iter()
            .map(row_to_token)
            .collect();
        let [one] = matches.as_slice() else {
            return Ok(Err(matches.into_iter().map(|t| t.id).collect()));
        };
        client
            .execute(
                "UPDATE issued_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE jti = $1",
                &[&one.id, &now],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(Ok(TokenRecord {
            revoked_at: Some(one.revoked_at.unwrap_or(now)),
            ..one.clone()
        }))
    }

    pub async fn revoked_tokens(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT jti FROM issued_tokens WHERE revoked_at IS NOT NULL AND expires_at >= $1",
                &[&now],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn row_to_token(row: &Row) -> TokenRecord {
    TokenRecord {
        id: row.get(0),
        kind: row.get(1),
        name: row.get(2),
        issued_at: row.get(3),
        expires_at: row.get(4),
        revoked_at: row.get(5),
    }
}
