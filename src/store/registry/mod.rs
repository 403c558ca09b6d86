//! The control plane's registry of agents, in the same SQLite file as the
//! inventory. States are not stored: they follow from the stored times
//! ([`registration_state`]), so they are right after any restart.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, open_db};

mod backend;
pub mod postgres;
mod tokens;

use crate::model::RegistrationState;
use crate::model::control::AgentRecord;
pub use backend::{Backend, Revoked};

/// An agent's state from its stored times, at `now`: revoked, else expired
/// (its identity ran out without renewal), else lost (no heartbeat, nor
/// registration, within `lost_after`), else registered.
#[must_use]
pub fn registration_state(
    revoked_at: Option<i64>,
    identity_expires_at: i64,
    last_seen: i64,
    now: i64,
    lost_after: Duration,
) -> RegistrationState {
    let lost_after = i64::try_from(lost_after.as_secs()).unwrap_or(i64::MAX);
    if revoked_at.is_some() {
        RegistrationState::Revoked
    } else if identity_expires_at < now {
        // A token is valid through its exp second (no leeway), so is the agent.
        RegistrationState::Expired
    } else if now.saturating_sub(last_seen) > lost_after {
        RegistrationState::Lost
    } else {
        RegistrationState::Registered
    }
}

/// A registration about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    pub agent_id: String,
    /// The host the join token was bound to: a host that registers again
    /// with a token for the same host replaces its earlier record.
    pub bound_host: String,
    pub hostname: String,
    /// What the join token vouched for, in its issuer's order.
    pub addresses: Vec<String>,
    pub stats_port: u16,
    pub agent_version: String,
    pub identity_expires_at: i64,
}

/// A certificate the CA signed for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// What storing a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration<T> {
    /// Stored; `replaced` names the earlier record of the same host, now
    /// gone (its certificates revoked); `signed` is what the signing step made.
    Stored { replaced: Option<String>, signed: T },
    /// The join token was used before; nothing changed, nothing was signed.
    Replayed,
}

/// What a renewal did: renewed (with what the signing step made, when it
/// signed), refused, or stopped by the signing step (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome<T, E> {
    Renewed { signed: Option<T> },
    Refused(Refusal),
    SignFailed(E),
}

/// Why an agent's renewal or heartbeat was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    /// The connection showed no certificate of this agent's (none, another
    /// agent's, a revoked or an expired one).
    Certificate,
}

/// The registry: an open connection to the database.
#[derive(Debug)]
pub struct Registry {
    conn: Connection,
}

impl Registry {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_db(path)?;
        // Heartbeats are frequent and cheap to lose on power failure; a
        // process crash loses nothing in WAL mode with NORMAL sync.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self { conn })
    }

    /// A registry that lives only as long as this value (for tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        super::schema::migrate(&conn, Path::new(":memory:"))?;
        Ok(Self { conn })
    }

    /// Changes whenever another connection (another process) commits: what
    /// caches of this database check.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))?)
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&mut self) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Stores a registration made with the join token `jti`, in one
    /// transaction: the token is marked used, and only then is `sign` run
    /// (a replayed token never gets anything signed); then the agent and
    /// its certificate are stored, replacing any earlier record enrolled
    /// for the same bound host. A used `jti`, or a failed `sign`, changes
    /// nothing.
    pub fn register<T, E>(
        &mut self,
        agent: &NewAgent,
        jti: &str,
        jti_expires_at: i64,
        now: i64,
        sign: impl FnOnce() -> Result<(CertRow, T), E>,
    ) -> Result<Result<Registration<T>, E>, StoreError> {
        let tx = self.conn.transaction()?;
        // Used tokens past their expiry can never verify again: forget them.
        tx.execute("DELETE FROM used_join_tokens WHERE expires_at < ?1", [now])?;
        tx.execute("DELETE FROM agent_certs WHERE not_after < ?1", [now])?;
        let fresh = tx.execute(
            "INSERT INTO used_join_tokens (jti, used_at, expires_at, agent_id)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (jti) DO NOTHING",
            params![jti, now, jti_expires_at, agent.agent_id],
        )?;
        if fresh == 0 {
            return Ok(Ok(Registration::Replayed));
        }
        let (cert, signed) = match sign() {
            Ok(done) => done,
            // Dropping the transaction rolls the token's use back.
            Err(e) => return Ok(Err(e)),
        };
        let replaced: Option<String> = tx
            .query_row(
                "DELETE FROM agents WHERE bound_host = ?1 RETURNING agent_id",
                [&agent.bound_host],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(old) = &replaced {
            tx.execute(
                "UPDATE agent_certs SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
                params![old, now],
            )?;
        }
        tx.execute(
            "INSERT INTO agents (agent_id, bound_host, hostname, addresses, stats_port,
                                 agent_version, registered_at, identity_expires_at,
                                 certificate_expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                agent.agent_id,
                agent.bound_host,
                agent.hostname,
                agent.addresses.join(","),
                agent.stats_port,
                agent.agent_version,
                now,
                agent.identity_expires_at,
                cert.not_after
            ],
        )?;
        insert_cert(&tx, &agent.agent_id, &cert)?;
        tx.commit()?;
        Ok(Ok(Registration::Stored { replaced, signed }))
    }

    /// One agent, with its state at `now`.
    pub fn get(
        &self,
        agent_id: &str,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_AGENT} WHERE agent_id = ?1"))?;
        Ok(stmt
            .query_row([agent_id], |row| row_to_record(row, now, lost_after))
            .optional()?)
    }

    /// Every agent, by hostname, with its state at `now`.
    pub fn list(&self, now: i64, lost_after: Duration) -> Result<Vec<AgentRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_AGENT} ORDER BY hostname"))?;
        let rows = stmt.query_map([], |row| row_to_record(row, now, lost_after))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a heartbeat, unless the agent is unknown or revoked, or did
    /// not show a live certificate of its own (`cert_serial`).
    pub fn heartbeat(
        &mut self,
        agent_id: &str,
        cert_serial: Option<&str>,
        agent_version: &str,
        now: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let updated = self
            .conn
            .prepare_cached(&format!(
                "UPDATE agents SET last_heartbeat_at = ?2, agent_version = ?3
                 WHERE agent_id = ?1 AND revoked_at IS NULL AND {HOLDS_CERT}"
            ))?
            .execute(params![agent_id, now, agent_version, cert_serial])?;
        if updated == 1 {
            Ok(Ok(()))
        } else {
            self.refusal(agent_id).map(Err)
        }
    }

    /// Records a renewal (and a new certificate), unless the agent is
    /// unknown or revoked, or did not show a live certificate of its own.
    /// Only heartbeats keep an agent from being lost.
    pub fn renew(
        &mut self,
        agent_id: &str,
        cert_serial: Option<&str>,
        identity_expires_at: i64,
        new_cert: Option<&CertRow>,
        now: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let tx = self.conn.transaction()?;
        let updated = tx.execute(
            &format!(
                "UPDATE agents SET identity_expires_at = ?3,
                        certificate_expires_at = coalesce(?5, certificate_expires_at)
                 WHERE agent_id = ?1 AND revoked_at IS NULL AND {HOLDS_CERT}"
            ),
            params![
                agent_id,
                now,
                identity_expires_at,
                cert_serial,
                new_cert.map(|c| c.not_after)
            ],
        )?;
        if updated != 1 {
            drop(tx);
            return self.refusal(agent_id).map(Err);
        }
        if let Some(cert) = new_cert {
            insert_cert(&tx, agent_id, cert)?;
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// A renewal as the control plane makes it: the agent must show a live
    /// certificate of its own; then `sign` gets the names on record (what
    /// its join token vouched for, never what a CSR asks) and may make a
    /// certificate; then the new identity (and certificate) are stored.
    pub fn renew_signed<T, E>(
        &mut self,
        agent_id: &str,
        cert_serial: Option<&str>,
        identity_expires_at: i64,
        now: i64,
        sign: impl FnOnce(&[String]) -> Result<Option<(CertRow, T)>, E>,
    ) -> Result<RenewOutcome<T, E>, StoreError> {
        if let Err(refusal) = self.check(agent_id, cert_serial, now)? {
            return Ok(RenewOutcome::Refused(refusal));
        }
        let names = self
            .get(agent_id, now, Duration::MAX)?
            .map(|record| record.addresses)
            .unwrap_or_default();
        let (cert, signed) = match sign(&names) {
            Ok(Some((cert, signed))) => (Some(cert), Some(signed)),
            Ok(None) => (None, None),
            Err(e) => return Ok(RenewOutcome::SignFailed(e)),
        };
        Ok(
            match self.renew(
                agent_id,
                cert_serial,
                identity_expires_at,
                cert.as_ref(),
                now,
            )? {
                Ok(()) => RenewOutcome::Renewed { signed },
                Err(refusal) => RenewOutcome::Refused(refusal),
            },
        )
    }

    /// Whether `cert_serial` is a live certificate of `agent_id`'s, and the
    /// agent is registered and not revoked: what a renewal must show
    /// before anything is signed.
    pub fn check(
        &self,
        agent_id: &str,
        cert_serial: Option<&str>,
        now: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let ok: Option<i64> = self
            .conn
            .query_row(
                &format!(
                    "SELECT 1 FROM agents WHERE agent_id = ?1 AND revoked_at IS NULL AND {HOLDS_CERT}"
                ),
                params![agent_id, now, Option::<i64>::None, cert_serial],
                |row| row.get(0),
            )
            .optional()?;
        if ok.is_some() {
            Ok(Ok(()))
        } else {
            self.refusal(agent_id).map(Err)
        }
    }

    /// Revokes an agent and every certificate it holds (the first
    /// revocation's time is kept); `None` when there is no such agent.
    pub fn revoke(
        &mut self,
        agent_id: &str,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE agents SET revoked_at = coalesce(revoked_at, ?2) WHERE agent_id = ?1",
            params![agent_id, now],
        )?;
        tx.execute(
            "UPDATE agent_certs SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
            params![agent_id, now],
        )?;
        tx.commit()?;
        self.get(agent_id, now, lost_after)
    }

    /// Revoked certificates that have not expired: the CRL's entries
    /// (serial, revocation time).
    pub fn revoked_certs(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT serial, revoked_at FROM agent_certs
             WHERE revoked_at IS NOT NULL AND not_after >= ?1 ORDER BY serial",
        )?;
        let rows = stmt.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn refusal(&self, agent_id: &str) -> Result<Refusal, StoreError> {
        let revoked: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT revoked_at FROM agents WHERE agent_id = ?1",
                [agent_id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(match revoked {
            Some(Some(_)) => Refusal::Revoked,
            Some(None) => Refusal::Certificate,
            None => Refusal::Unknown,
        })
    }
}

/// The SQL condition "the connection showed a live certificate of this
/// agent's": `?1` agent id, `?2` now, `?4` the serial shown.
const HOLDS_CERT: &str = "EXISTS (SELECT 1 FROM agent_certs c
    WHERE c.serial = ?4 AND c.agent_id = ?1 AND c.revoked_at IS NULL AND c.not_after >= ?2)";

fn insert_cert(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    cert: &CertRow,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO agent_certs (serial, agent_id, not_after) VALUES (?1, ?2, ?3)",
        params![cert.serial, agent_id, cert.not_after],
    )?;
    Ok(())
}

const SELECT_AGENT: &str = "SELECT agent_id, hostname, addresses, stats_port, agent_version,
        registered_at, last_heartbeat_at, identity_expires_at, certificate_expires_at, revoked_at
        FROM agents";

fn row_to_record(
    row: &rusqlite::Row<'_>,
    now: i64,
    lost_after: Duration,
) -> rusqlite::Result<AgentRecord> {
    let addresses: String = row.get(2)?;
    let registered_at: i64 = row.get(5)?;
    let last_heartbeat_at: Option<i64> = row.get(6)?;
    let identity_expires_at: i64 = row.get(7)?;
    let revoked_at: Option<i64> = row.get(9)?;
    Ok(AgentRecord {
        agent_id: row.get(0)?,
        hostname: row.get(1)?,
        addresses: addresses
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        stats_port: row.get(3)?,
        agent_version: row.get(4)?,
        state: registration_state(
            revoked_at,
            identity_expires_at,
            last_heartbeat_at.unwrap_or(registered_at),
            now,
            lost_after,
        ),
        registered_at,
        last_heartbeat_at,
        identity_expires_at,
        certificate_expires_at: row.get(8)?,
        revoked_at,
    })
}

#[cfg(test)]
mod tests;
