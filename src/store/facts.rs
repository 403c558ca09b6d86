//! Facts learned over SSH, kept per address and port.
//!
//! Each attempt records its outcome (`ok` or the failure class) and when it
//! ended. A failed attempt does not erase what an earlier one learned: the
//! facts and host key stay, with the time they were gathered, so the console
//! can show "auth failed now, Debian 12 as of yesterday".

use rusqlite::{OptionalExtension, params};

use super::{Inventory, StoreError};
use crate::model::{FailureKind, Fingerprint, HostFacts};

/// What the inventory knows of a host from fingerprinting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFacts {
    /// The address (or name) connected to, and the port.
    pub address: String,
    pub port: u16,
    /// The host as the operator last named it.
    pub host: String,
    /// The last attempt's failure class; `None` when it succeeded.
    pub failure: Option<FailureKind>,
    /// The last attempt's error message, when it failed.
    pub error: Option<String>,
    /// Unix seconds when the last attempt ended.
    pub checked_at: i64,
    /// `SHA256:...` of the host key, from the last successful attempt.
    pub host_key: Option<String>,
    /// The facts of the last successful attempt.
    pub facts: Option<HostFacts>,
    /// Unix seconds when those facts were gathered.
    pub gathered_at: Option<i64>,
}

const OK: &str = "ok";

impl Inventory {
    /// Records fingerprint outcomes, in one transaction.
    pub fn record_fingerprints(&mut self, results: &[Fingerprint]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut ok = tx.prepare_cached(
                "INSERT INTO host_facts (address, port, host, outcome, error, checked_at,
                                         host_key, facts, gathered_at)
                 VALUES (?1, ?2, ?3, 'ok', NULL, ?4, ?5, ?6, ?4)
                 ON CONFLICT (address, port) DO UPDATE SET
                    host = excluded.host, outcome = 'ok', error = NULL,
                    checked_at = excluded.checked_at, host_key = excluded.host_key,
                    facts = excluded.facts, gathered_at = excluded.gathered_at",
            )?;
            let mut failed = tx.prepare_cached(
                "INSERT INTO host_facts (address, port, host, outcome, error, checked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (address, port) DO UPDATE SET
                    host = excluded.host, outcome = excluded.outcome,
                    error = excluded.error, checked_at = excluded.checked_at",
            )?;
            for r in results {
                match r.failure {
                    None => {
                        let facts = r.facts.as_ref().map(to_json).transpose()?;
                        ok.execute(params![
                            r.address,
                            r.port,
                            r.host,
                            r.gathered_at,
                            r.host_key,
                            facts
                        ])?;
                    }
                    Some(kind) => {
                        failed.execute(params![
                            r.address,
                            r.port,
                            r.host,
                            failure_code(kind)?,
                            r.error,
                            r.gathered_at
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// What fingerprinting learned of `address` on `port`, if it was tried.
    pub fn facts(&self, address: &str, port: u16) -> Result<Option<StoredFacts>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT} WHERE address = ?1 AND port = ?2"))?;
        Ok(stmt
            .query_row(params![address, port], row_to_facts)
            .optional()?)
    }

    /// Everything fingerprinting learned, by address and port.
    pub fn all_facts(&self) -> Result<Vec<StoredFacts>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT} ORDER BY address, port"))?;
        let rows = stmt.query_map([], row_to_facts)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const SELECT: &str = "SELECT address, port, host, outcome, error, checked_at, host_key, facts,
                             gathered_at FROM host_facts";

fn row_to_facts(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFacts> {
    let bad = |i: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    };
    let outcome: String = row.get(3)?;
    let failure = if outcome == OK {
        None
    } else {
        Some(
            serde_json::from_value(serde_json::Value::String(outcome.clone()))
                .map_err(|_| bad(3, format!("not an SSH outcome: {outcome:?}")))?,
        )
    };
    let facts: Option<String> = row.get(7)?;
    Ok(StoredFacts {
        address: row.get(0)?,
        port: row.get(1)?,
        host: row.get(2)?,
        failure,
        error: row.get(4)?,
        checked_at: row.get(5)?,
        host_key: row.get(6)?,
        facts: facts
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(|e| bad(7, e.to_string()))?,
        gathered_at: row.get(8)?,
    })
}

fn to_json(facts: &HostFacts) -> Result<String, StoreError> {
    serde_json::to_string(facts).map_err(|e| StoreError::Encode(e.to_string()))
}

/// The kebab-case form serde gives the class, so JSON output and the store agree.
fn failure_code(kind: FailureKind) -> Result<String, StoreError> {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(code)) => Ok(code),
        other => Err(StoreError::Encode(format!("{kind:?} encoded as {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(address: &str, at: i64, os: &str) -> Fingerprint {
        Fingerprint {
            host: format!("alias-{address}"),
            address: address.into(),
            port: 22,
            host_key: Some("SHA256:abc".into()),
            facts: Some(HostFacts {
                os_id: Some(os.into()),
                cpu_count: Some(4),
                addresses: vec!["10.0.0.5".into()],
                ..HostFacts::default()
            }),
            failure: None,
            error: None,
            gathered_at: at,
        }
    }

    fn failed(address: &str, at: i64, kind: FailureKind) -> Fingerprint {
        Fingerprint {
            host: address.into(),
            address: address.into(),
            port: 22,
            host_key: None,
            facts: None,
            failure: Some(kind),
            error: Some(format!("{address}: {}", kind.as_str())),
            gathered_at: at,
        }
    }

    #[test]
    fn facts_are_stored_with_the_time_they_were_gathered() {
        let mut inv = Inventory::open_in_memory().unwrap();
        inv.record_fingerprints(&[
            ok("10.0.0.5", 1000, "debian"),
            failed("10.0.0.6", 1001, FailureKind::AuthFailed),
        ])
        .unwrap();
        let stored = inv.facts("10.0.0.5", 22).unwrap().unwrap();
        assert_eq!(stored.failure, None);
        assert_eq!(stored.gathered_at, Some(1000));
        assert_eq!(stored.checked_at, 1000);
        assert_eq!(stored.host_key.as_deref(), Some("SHA256:abc"));
        assert_eq!(stored.facts, ok("10.0.0.5", 0, "debian").facts);
        assert_eq!(stored.host, "alias-10.0.0.5");

        let refused = inv.facts("10.0.0.6", 22).unwrap().unwrap();
        assert_eq!(refused.failure, Some(FailureKind::AuthFailed));
        assert_eq!((refused.facts, refused.gathered_at), (None, None));
        assert_eq!(inv.facts("10.0.0.5", 2222).unwrap(), None, "per port");
        assert_eq!(inv.all_facts().unwrap().len(), 2);
    }

    #[test]
    fn a_failure_keeps_what_the_last_success_learned_and_a_success_replaces_it() {
        let mut inv = Inventory::open_in_memory().unwrap();
        inv.record_fingerprints(&[ok("10.0.0.5", 1000, "debian")])
            .unwrap();
        inv.record_fingerprints(&[failed("10.0.0.5", 2000, FailureKind::HostKeyChanged)])
            .unwrap();
        let stored = inv.facts("10.0.0.5", 22).unwrap().unwrap();
        assert_eq!(stored.failure, Some(FailureKind::HostKeyChanged));
        assert!(stored.error.unwrap().contains("CHANGED"));
        assert_eq!(stored.checked_at, 2000);
        assert_eq!(stored.gathered_at, Some(1000), "the old facts stay, dated");
        assert_eq!(stored.host_key.as_deref(), Some("SHA256:abc"));

        inv.record_fingerprints(&[ok("10.0.0.5", 3000, "alpine")])
            .unwrap();
        let stored = inv.facts("10.0.0.5", 22).unwrap().unwrap();
        assert_eq!((stored.failure, stored.error), (None, None));
        assert_eq!(stored.gathered_at, Some(3000));
        assert_eq!(stored.facts.unwrap().os_id.as_deref(), Some("alpine"));
    }

    #[test]
    fn every_failure_class_reads_back() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let kinds = [
            FailureKind::Unreachable,
            FailureKind::Timeout,
            FailureKind::AuthFailed,
            FailureKind::HostKeyUnknown,
            FailureKind::HostKeyChanged,
            FailureKind::HostKeyRevoked,
            FailureKind::CommandFailed,
            FailureKind::Protocol,
        ];
        let results: Vec<_> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| failed(&format!("10.0.1.{i}"), 5, *k))
            .collect();
        inv.record_fingerprints(&results).unwrap();
        let back: Vec<_> = inv
            .all_facts()
            .unwrap()
            .into_iter()
            .map(|f| f.failure.unwrap())
            .collect();
        assert_eq!(back, kinds);
    }
}
