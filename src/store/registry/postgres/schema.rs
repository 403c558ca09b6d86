//! The registry's schema in PostgreSQL: versions counted in
//! `fleetctl_schema_version`, applied in order, once, under an advisory
//! lock, so replicas starting together (or `fleetctl registry migrate`
//! beside them) never apply one twice.

use deadpool_postgres::Object;

use super::pg_error;
use crate::store::StoreError;

/// The advisory lock every fleetctl holds while migrating ("fleetct1").
const MIGRATION_LOCK: i64 = 0x666c_6565_7463_7431;

/// Each entry moves the schema one version up. Never edit a shipped entry.
/// The tables and their rules are the SQLite registry's (see
/// `store::schema`), in PostgreSQL's types.
const MIGRATIONS: &[&str] = &[
    // 1: agents keyed by id and by the host their join token was bound to;
    // used join tokens (kept until they expire, so a replay is refused by
    // every replica); the certificates each agent holds (what it must show,
    // what the CRL names once revoked); the tokens minted for people.
    "CREATE TABLE agents (
        agent_id TEXT PRIMARY KEY,
        bound_host TEXT NOT NULL UNIQUE,
        hostname TEXT NOT NULL,
        addresses TEXT NOT NULL,
        stats_port INTEGER NOT NULL,
        agent_version TEXT NOT NULL,
        registered_at BIGINT NOT NULL,
        last_heartbeat_at BIGINT,
        identity_expires_at BIGINT NOT NULL,
        certificate_expires_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE TABLE used_join_tokens (
        jti TEXT PRIMARY KEY,
        used_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        agent_id TEXT NOT NULL
    );
    CREATE TABLE agent_certs (
        serial TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        not_after BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX agent_certs_by_agent ON agent_certs (agent_id);
    CREATE INDEX agent_certs_by_expiry ON agent_certs (not_after);
    CREATE INDEX used_join_tokens_by_expiry ON used_join_tokens (expires_at);
    CREATE TABLE issued_tokens (
        jti TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT
    );",
];

/// The version this fleetctl knows.
#[must_use]
pub fn known() -> u32 {
    MIGRATIONS.len() as u32
}

/// The version the database is at (0 for an empty database).
pub async fn version(client: &Object) -> Result<u32, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('fleetctl_schema_version') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| pg_error(&e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let found: Option<i32> = client
        .query_one("SELECT max(version) FROM fleetctl_schema_version", &[])
        .await
        .map_err(|e| pg_error(&e))?
        .get(0);
    Ok(found.map_or(0, i32::unsigned_abs))
}

/// Brings the schema up to [`known`], holding the advisory lock while it
/// looks and applies; returns `(before, after)`.
pub async fn migrate(client: &mut Object) -> Result<(u32, u32), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| pg_error(&e))?;
    let outcome = migrate_locked(client).await;
    // Also released when the connection closes, should this fail.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| pg_error(&e));
    let versions = outcome?;
    unlocked?;
    Ok(versions)
}

async fn migrate_locked(client: &mut Object) -> Result<(u32, u32), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS fleetctl_schema_version (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| pg_error(&e))?;
    let found = version(client).await?;
    if found > known() {
        return Err(StoreError::DatabaseTooNew {
            found,
            known: known(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
        tx.batch_execute(sql).await.map_err(|e| pg_error(&e))?;
        tx.execute(
            "INSERT INTO fleetctl_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        tx.commit().await.map_err(|e| pg_error(&e))?;
        tracing::info!(version, "registry schema migrated");
    }
    Ok((found, known()))
}
