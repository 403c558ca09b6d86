//! The control plane's registry of agents, in the same SQLite file as the
//! inventory. States are not stored: they follow from the stored times
//! ([`registration_state`]), so they are right after any restart.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, open_db};
use crate::model::RegistrationState;
use crate::model::control::{AgentRecord, TokenRecord};

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
            bound_host: host.into(),
            hostname: host.into(),
            addresses: vec!["127.4.0.9".into(), "::1".into()],
            stats_port: 9100,
            agent_version: "0.1.0".into(),
            identity_expires_at: 5_000,
        }
    }

    fn cert(serial: &str) -> CertRow {
        CertRow {
            serial: serial.into(),
            not_after: 90_000,
        }
    }

    /// Registers with a certificate `serial` (signing always works).
    fn reg(r: &mut Registry, a: &NewAgent, jti: &str, now: i64, serial: &str) -> Registration<()> {
        r.register(a, jti, 2_000, now, || Ok::<_, ()>((cert(serial), ())))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_join_token_registers_once_and_nothing_is_signed_for_a_replay() {
        let mut r = Registry::open_in_memory().unwrap();
        let stored = reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
        assert_eq!(
            stored,
            Registration::Stored {
                replaced: None,
                signed: ()
            }
        );
        let mut signed = false;
        let again = r
            .register(&agent("a2", "web2"), "jti-1", 2_000, 1_001, || {
                signed = true;
                Ok::<_, ()>((cert("40a2"), ()))
            })
            .unwrap()
            .unwrap();
        assert_eq!(again, Registration::Replayed);
        assert!(!signed, "the CSR is signed only after the one-use check");
        let all = r.list(1_001, LOST).unwrap();
        assert_eq!(all.len(), 1, "a replay stores nothing");
        assert_eq!(all[0].addresses, ["127.4.0.9", "::1"]);
        assert_eq!(all[0].state, RegistrationState::Registered);
        assert_eq!(all[0].certificate_expires_at, 90_000);
    }

    #[test]
    fn a_failed_signing_does_not_use_the_token() {
        let mut r = Registry::open_in_memory().unwrap();
        let failed = r
            .register(&agent("a1", "web1"), "jti-1", 2_000, 1_000, || {
                Err::<(CertRow, ()), _>("bad csr")
            })
            .unwrap();
        assert_eq!(failed, Err("bad csr"));
        assert!(r.list(1_000, LOST).unwrap().is_empty());
        reg(&mut r, &agent("a1", "web1"), "jti-1", 1_001, "40a1");
        assert_eq!(r.list(1_001, LOST).unwrap().len(), 1);
    }

    #[test]
    fn a_host_registering_again_replaces_its_record_and_revokes_its_certificates() {
        let mut r = Registry::open_in_memory().unwrap();
        reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
        let second = reg(&mut r, &agent("a2", "web1"), "jti-2", 1_100, "40a2");
        assert_eq!(
            second,
            Registration::Stored {
                replaced: Some("a1".into()),
                signed: ()
            }
        );
        let all = r.list(1_100, LOST).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].agent_id, "a2");
        assert_eq!(all[0].registered_at, 1_100);
        assert_eq!(
            r.heartbeat("a1", Some("40a1"), "0.1.0", 1_101).unwrap(),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            r.revoked_certs(1_101).unwrap(),
            [("40a1".to_string(), 1_100)]
        );
    }

    #[test]
    fn cloned_hosts_sharing_a_hostname_keep_their_own_records() {
        let mut r = Registry::open_in_memory().unwrap();
        let first = NewAgent {
            bound_host: "10.0.0.5".into(),
            ..agent("a1", "debian")
        };
        let second = NewAgent {
            bound_host: "10.0.0.6".into(),
            ..agent("a2", "debian")
        };
        reg(&mut r, &first, "jti-1", 1_000, "40a1");
        let outcome = reg(&mut r, &second, "jti-2", 1_001, "40a2");
        assert_eq!(
            outcome,
            Registration::Stored {
                replaced: None,
                signed: ()
            }
        );
        let ids: Vec<String> = r
            .list(1_001, LOST)
            .unwrap()
            .into_iter()
            .map(|a| a.agent_id)
            .collect();
        assert_eq!(ids, ["a1", "a2"]);
    }

    #[test]
    fn heartbeats_and_renewals_need_the_agents_own_live_certificate() {
        let mut r = Registry::open_in_memory().unwrap();
        reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
        reg(&mut r, &agent("a2", "web2"), "jti-2", 1_000, "40a2");
        for serial in [None, Some("40a2"), Some("40ff")] {
            assert_eq!(
                r.heartbeat("a1", serial, "0.2.0", 1_100).unwrap(),
                Err(Refusal::Certificate),
                "{serial:?}"
            );
            assert_eq!(
                r.renew("a1", serial, 9_000, None, 1_100).unwrap(),
                Err(Refusal::Certificate)
            );
            assert_eq!(
                r.check("a1", serial, 1_100).unwrap(),
                Err(Refusal::Certificate)
            );
        }
        assert_eq!(r.check("a1", Some("40a1"), 1_100).unwrap(), Ok(()));
        // Past its not_after, a certificate no longer counts.
        assert_eq!(
            r.heartbeat("a1", Some("40a1"), "0.2.0", 90_001).unwrap(),
            Err(Refusal::Certificate)
        );
    }

    #[test]
    fn heartbeats_renewals_and_revocation() {
        let mut r = Registry::open_in_memory().unwrap();
        reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
        let shown = Some("40a1");
        assert_eq!(
            r.get("a1", 1_200, LOST).unwrap().unwrap().state,
            RegistrationState::Lost
        );
        r.heartbeat("a1", shown, "0.2.0", 1_200).unwrap().unwrap();
        let rec = r.get("a1", 1_200, LOST).unwrap().unwrap();
        assert_eq!(rec.state, RegistrationState::Registered);
        assert_eq!(rec.last_heartbeat_at, Some(1_200));
        assert_eq!(rec.agent_version, "0.2.0");

        let renewed = CertRow {
            serial: "40b1".into(),
            not_after: 99_000,
        };
        r.renew("a1", shown, 9_000, Some(&renewed), 1_300)
            .unwrap()
            .unwrap();
        let rec = r.get("a1", 1_300, LOST).unwrap().unwrap();
        assert_eq!(
            (rec.identity_expires_at, rec.certificate_expires_at),
            (9_000, 99_000)
        );
        // Both certificates count until one expires or is revoked.
        r.renew("a1", Some("40b1"), 9_500, None, 1_400)
            .unwrap()
            .unwrap();
        r.heartbeat("a1", shown, "0.2.0", 1_400).unwrap().unwrap();
        let rec = r.get("a1", 1_400, LOST).unwrap().unwrap();
        assert_eq!(
            (rec.identity_expires_at, rec.certificate_expires_at),
            (9_500, 99_000)
        );
        assert_eq!(
            r.get("a1", 9_501, LOST).unwrap().unwrap().state,
            RegistrationState::Expired
        );

        let revoked = r.revoke("a1", 1_500, LOST).unwrap().unwrap();
        assert_eq!(revoked.state, RegistrationState::Revoked);
        assert_eq!(revoked.revoked_at, Some(1_500));
        assert_eq!(
            r.revoke("a1", 1_600, LOST).unwrap().unwrap().revoked_at,
            Some(1_500)
        );
        assert_eq!(
            r.revoked_certs(1_600).unwrap(),
            [("40a1".to_string(), 1_500), ("40b1".to_string(), 1_500)]
        );
        assert_eq!(
            r.heartbeat("a1", shown, "0.2.0", 1_700).unwrap(),
            Err(Refusal::Revoked)
        );
        assert_eq!(
            r.renew("a1", shown, 9_900, None, 1_700).unwrap(),
            Err(Refusal::Revoked)
        );
        assert_eq!(
            r.heartbeat("nope", shown, "0.2.0", 1_700).unwrap(),
            Err(Refusal::Unknown)
        );
        assert!(r.revoke("nope", 1_700, LOST).unwrap().is_none());
        // An expired certificate leaves the CRL.
        assert_eq!(r.revoked_certs(95_000).unwrap().len(), 1);
    }

    #[test]
    fn tokens_are_listed_revoked_by_id_or_prefix_and_forgotten_once_expired() {
        let mut r = Registry::open_in_memory().unwrap();
        let token = |id: &str, kind: &str, exp: i64| TokenRecord {
            id: id.into(),
            kind: kind.into(),
            name: "prometheus".into(),
            issued_at: 1_000,
            expires_at: exp,
            revoked_at: None,
        };
        r.record_token(&token("aaaa1111", "stats", 5_000)).unwrap();
        r.record_token(&token("aaaa2222", "operator", 5_000))
            .unwrap();
        r.record_token(&token("bbbb3333", "sd", 1_500)).unwrap();
        let before = r.data_version().unwrap();
        assert_eq!(r.tokens(2_000, false).unwrap().len(), 2);
        assert_eq!(r.tokens(2_000, true).unwrap().len(), 3);
        assert_eq!(
            r.revoke_token("aaaa", 2_000).unwrap().unwrap_err(),
            ["aaaa1111", "aaaa2222"],
            "an ambiguous prefix names the matches"
        );
        assert!(
            r.revoke_token("cccc", 2_000)
                .unwrap()
                .unwrap_err()
                .is_empty()
        );
        let done = r.revoke_token("aaaa1", 2_000).unwrap().unwrap();
        assert_eq!(
            (done.id.as_str(), done.revoked_at),
            ("aaaa1111", Some(2_000))
        );
        assert_eq!(r.revoked_tokens(2_000).unwrap(), ["aaaa1111"]);
        assert_eq!(
            r.revoke_token("aaaa1111", 3_000)
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(2_000)
        );
        assert!(r.revoked_tokens(5_001).unwrap().is_empty());
        // This connection's own writes leave its data version alone.
        assert_eq!(r.data_version().unwrap(), before);
    }

    #[test]
    fn another_connections_write_changes_the_data_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.sqlite3");
        let server = Registry::open(&path).unwrap();
        let before = server.data_version().unwrap();
        let mut cli = Registry::open(&path).unwrap();
        cli.record_token(&TokenRecord {
            id: "t1".into(),
            kind: "operator".into(),
            name: "me".into(),
            issued_at: 1,
            expires_at: 2,
            revoked_at: None,
        })
        .unwrap();
        assert_ne!(server.data_version().unwrap(), before);
    }

    #[test]
    fn survives_reopening_and_remembers_used_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.sqlite3");
        {
            let mut r = Registry::open(&path).unwrap();
            reg(&mut r, &agent("a1", "web1"), "jti-1", 1_000, "40a1");
            r.revoke("a1", 1_100, LOST).unwrap();
        }
        let mut r = Registry::open(&path).unwrap();
        assert_eq!(
            r.get("a1", 1_200, LOST).unwrap().unwrap().state,
            RegistrationState::Revoked
        );
        assert_eq!(
            reg(&mut r, &agent("a2", "web2"), "jti-1", 1_200, "40a2"),
            Registration::Replayed
        );
        // Once expired, a used jti is forgotten; the token itself no longer verifies.
        r.register(&agent("a3", "web3"), "jti-3", 9_000, 2_001, || {
            Ok::<_, ()>((cert("40a3"), ()))
        })
        .unwrap()
        .unwrap();
        let kept: i64 = r
            .conn
            .query_row("SELECT count(*) FROM used_join_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
    }
}
