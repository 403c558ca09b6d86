//! The control plane's registry of agents, in the same SQLite file as the
//! inventory. States are not stored: they follow from the stored times
//! ([`registration_state`]), so they are right after any restart.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, open_db};
use crate::model::RegistrationState;
use crate::model::control::AgentRecord;

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
    pub hostname: String,
    pub addresses: Vec<String>,
    pub stats_port: u16,
    pub agent_version: String,
    pub identity_expires_at: i64,
    pub certificate_expires_at: i64,
}

/// What storing a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Stored; `replaced` names the earlier record of the same host, now gone.
    Stored { replaced: Option<String> },
    /// The join token was used before; nothing changed.
    Replayed,
}

/// Why an agent's renewal or heartbeat was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
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

    /// Stores a registration made with the join token `jti`, in one
    /// transaction: the token is marked used and the agent stored, replacing
    /// any earlier record of the same hostname. A used `jti` changes nothing.
    pub fn register(
        &mut self,
        agent: &NewAgent,
        jti: &str,
        jti_expires_at: i64,
        now: i64,
    ) -> Result<Registration, StoreError> {
        let tx = self.conn.transaction()?;
        // Used tokens past their expiry can never verify again: forget them.
        tx.execute("DELETE FROM used_join_tokens WHERE expires_at < ?1", [now])?;
        let fresh = tx.execute(
            "INSERT INTO used_join_tokens (jti, used_at, expires_at, agent_id)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (jti) DO NOTHING",
            params![jti, now, jti_expires_at, agent.agent_id],
        )?;
        if fresh == 0 {
            return Ok(Registration::Replayed);
        }
        let replaced: Option<String> = tx
            .query_row(
                "DELETE FROM agents WHERE hostname = ?1 RETURNING agent_id",
                [&agent.hostname],
                |row| row.get(0),
            )
            .optional()?;
        tx.execute(
            "INSERT INTO agents (agent_id, hostname, addresses, stats_port, agent_version,
                                 registered_at, identity_expires_at, certificate_expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                agent.agent_id,
                agent.hostname,
                agent.addresses.join(","),
                agent.stats_port,
                agent.agent_version,
                now,
                agent.identity_expires_at,
                agent.certificate_expires_at
            ],
        )?;
        tx.commit()?;
        Ok(Registration::Stored { replaced })
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

    /// Records a heartbeat, unless the agent is unknown or revoked.
    pub fn heartbeat(
        &mut self,
        agent_id: &str,
        agent_version: &str,
        now: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let updated = self
            .conn
            .prepare_cached(
                "UPDATE agents SET last_heartbeat_at = ?2, agent_version = ?3
                 WHERE agent_id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![agent_id, now, agent_version])?;
        if updated == 1 {
            Ok(Ok(()))
        } else {
            self.refusal(agent_id).map(Err)
        }
    }

    /// Records a renewal (and a new certificate's expiry), unless the agent
    /// is unknown or revoked. Only heartbeats keep an agent from being lost.
    pub fn renew(
        &mut self,
        agent_id: &str,
        identity_expires_at: i64,
        certificate_expires_at: Option<i64>,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let updated = self.conn.execute(
            "UPDATE agents SET identity_expires_at = ?2,
                    certificate_expires_at = coalesce(?3, certificate_expires_at)
             WHERE agent_id = ?1 AND revoked_at IS NULL",
            params![agent_id, identity_expires_at, certificate_expires_at],
        )?;
        if updated == 1 {
            Ok(Ok(()))
        } else {
            self.refusal(agent_id).map(Err)
        }
    }

    /// Revokes an agent (the first revocation's time is kept); `None` when
    /// there is no such agent.
    pub fn revoke(
        &mut self,
        agent_id: &str,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.conn.execute(
            "UPDATE agents SET revoked_at = coalesce(revoked_at, ?2) WHERE agent_id = ?1",
            params![agent_id, now],
        )?;
        self.get(agent_id, now, lost_after)
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
            // Gone, or un-revoked in between (never happens): both unknown to this call.
            _ => Refusal::Unknown,
        })
    }
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
mod tests {
    use super::*;

    const LOST: Duration = Duration::from_secs(90);

    #[test]
    fn states_follow_from_stored_times() {
        use RegistrationState::{Expired, Lost, Registered, Revoked};
        let t = 1_000_000;
        // (revoked_at, identity_expires_at, last_seen, now) -> state
        for (revoked, ident, seen, now, want) in [
            (None, t + 3600, t, t, Registered),
            (None, t + 3600, t, t + 90, Registered),
            (None, t + 3600, t, t + 91, Lost),
            (None, t + 60, t, t + 60, Registered),
            (None, t + 60, t, t + 61, Expired),
            (None, t + 60, t, t + 500, Expired),
            (Some(t), t + 3600, t, t, Revoked),
            (Some(t), t - 5, t - 500, t, Revoked),
        ] {
            assert_eq!(
                registration_state(revoked, ident, seen, now, LOST),
                want,
                "revoked {revoked:?} identity {ident} seen {seen} now {now}"
            );
        }
    }

    fn agent(id: &str, host: &str) -> NewAgent {
        NewAgent {
            agent_id: id.into(),
            hostname: host.into(),
            addresses: vec!["127.4.0.9".into(), "::1".into()],
            stats_port: 9100,
            agent_version: "0.1.0".into(),
            identity_expires_at: 5_000,
            certificate_expires_at: 90_000,
        }
    }

    #[test]
    fn a_join_token_registers_once() {
        let mut reg = Registry::open_in_memory().unwrap();
        let stored = reg
            .register(&agent("a1", "web1"), "jti-1", 2_000, 1_000)
            .unwrap();
        assert_eq!(stored, Registration::Stored { replaced: None });
        let again = reg
            .register(&agent("a2", "web2"), "jti-1", 2_000, 1_001)
            .unwrap();
        assert_eq!(again, Registration::Replayed);
        let all = reg.list(1_001, LOST).unwrap();
        assert_eq!(all.len(), 1, "a replay stores nothing");
        assert_eq!(all[0].addresses, ["127.4.0.9", "::1"]);
        assert_eq!(all[0].state, RegistrationState::Registered);
    }

    #[test]
    fn a_host_registering_again_replaces_its_record() {
        let mut reg = Registry::open_in_memory().unwrap();
        reg.register(&agent("a1", "web1"), "jti-1", 2_000, 1_000)
            .unwrap();
        let second = reg
            .register(&agent("a2", "web1"), "jti-2", 2_000, 1_100)
            .unwrap();
        assert_eq!(
            second,
            Registration::Stored {
                replaced: Some("a1".into())
            }
        );
        let all = reg.list(1_100, LOST).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].agent_id, "a2");
        assert_eq!(all[0].registered_at, 1_100);
        assert_eq!(
            reg.heartbeat("a1", "0.1.0", 1_101).unwrap(),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn heartbeats_renewals_and_revocation() {
        let mut reg = Registry::open_in_memory().unwrap();
        reg.register(&agent("a1", "web1"), "jti-1", 2_000, 1_000)
            .unwrap();
        assert_eq!(
            reg.get("a1", 1_200, LOST).unwrap().unwrap().state,
            RegistrationState::Lost
        );
        reg.heartbeat("a1", "0.2.0", 1_200).unwrap().unwrap();
        let rec = reg.get("a1", 1_200, LOST).unwrap().unwrap();
        assert_eq!(rec.state, RegistrationState::Registered);
        assert_eq!(rec.last_heartbeat_at, Some(1_200));
        assert_eq!(rec.agent_version, "0.2.0");

        reg.renew("a1", 9_000, Some(99_000)).unwrap().unwrap();
        let rec = reg.get("a1", 1_300, LOST).unwrap().unwrap();
        assert_eq!(
            (rec.identity_expires_at, rec.certificate_expires_at),
            (9_000, 99_000)
        );
        reg.renew("a1", 9_500, None).unwrap().unwrap();
        let rec = reg.get("a1", 1_400, LOST).unwrap().unwrap();
        assert_eq!(
            (rec.identity_expires_at, rec.certificate_expires_at),
            (9_500, 99_000)
        );
        assert_eq!(
            reg.get("a1", 9_501, LOST).unwrap().unwrap().state,
            RegistrationState::Expired
        );

        let revoked = reg.revoke("a1", 1_500, LOST).unwrap().unwrap();
        assert_eq!(revoked.state, RegistrationState::Revoked);
        assert_eq!(revoked.revoked_at, Some(1_500));
        assert_eq!(
            reg.revoke("a1", 1_600, LOST).unwrap().unwrap().revoked_at,
            Some(1_500)
        );
        assert_eq!(
            reg.heartbeat("a1", "0.2.0", 1_700).unwrap(),
            Err(Refusal::Revoked)
        );
        assert_eq!(reg.renew("a1", 9_900, None).unwrap(), Err(Refusal::Revoked));
        assert_eq!(
            reg.heartbeat("nope", "0.2.0", 1_700).unwrap(),
            Err(Refusal::Unknown)
        );
        assert!(reg.revoke("nope", 1_700, LOST).unwrap().is_none());
    }

    #[test]
    fn survives_reopening_and_remembers_used_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.sqlite3");
        {
            let mut reg = Registry::open(&path).unwrap();
            reg.register(&agent("a1", "web1"), "jti-1", 2_000, 1_000)
                .unwrap();
            reg.revoke("a1", 1_100, LOST).unwrap();
        }
        let mut reg = Registry::open(&path).unwrap();
        assert_eq!(
            reg.get("a1", 1_200, LOST).unwrap().unwrap().state,
            RegistrationState::Revoked
        );
        assert_eq!(
            reg.register(&agent("a2", "web2"), "jti-1", 2_000, 1_200)
                .unwrap(),
            Registration::Replayed
        );
        // Once expired, a used jti is forgotten; the token itself no longer verifies.
        reg.register(&agent("a3", "web3"), "jti-3", 9_000, 2_001)
            .unwrap();
        let kept: i64 = reg
            .conn
            .query_row("SELECT count(*) FROM used_join_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
    }
}
