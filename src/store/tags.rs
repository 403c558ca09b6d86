//! Tags on hosts, and how to reach them when an imported file said so.
//! Both are keyed by address, as the hosts table is.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rusqlite::params;

use super::{Inventory, StoreError};
use crate::model::tags::Tags;

/// How to reach one host over SSH, as an imported file gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAccess {
    pub port: Option<u16>,
    pub user: Option<String>,
}

impl Inventory {
    /// Sets `tags` on each host in `addrs` (replacing a key's value), in
    /// one transaction.
    pub fn tag(&mut self, addrs: &[IpAddr], tags: &[(String, String)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut set = tx.prepare_cached(
                "INSERT INTO host_tags (address, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (address, key) DO UPDATE SET value = excluded.value",
            )?;
            for addr in addrs {
                for (key, value) in tags {
                    set.execute(params![addr.to_string(), key, value])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Takes `keys` off each host in `addrs`; returns how many tags went.
    pub fn untag(&mut self, addrs: &[IpAddr], keys: &[String]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        {
            let mut delete =
                tx.prepare_cached("DELETE FROM host_tags WHERE address = ?1 AND key = ?2")?;
            for addr in addrs {
                for key in keys {
                    removed += delete.execute(params![addr.to_string(), key])?;
                }
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Every tagged host's tags, by address.
    pub fn all_tags(&self) -> Result<BTreeMap<IpAddr, Tags>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT address, key, value FROM host_tags")?;
        let mut rows = stmt.query([])?;
        let mut all = BTreeMap::<IpAddr, Tags>::new();
        while let Some(row) = rows.next()? {
            let addr: String = row.get(0)?;
            // A row no address parses from was not written by fleetctl.
            let Ok(addr) = addr.parse() else { continue };
            all.entry(addr)
                .or_default()
                .insert(row.get(1)?, row.get(2)?);
        }
        Ok(all)
    }

    /// Records how to reach `addr`; what `access` leaves unset is kept.
    pub fn set_access(&mut self, addr: IpAddr, access: &HostAccess) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO host_access (address, port, user) VALUES (?1, ?2, ?3)
             ON CONFLICT (address) DO UPDATE SET
                port = coalesce(excluded.port, host_access.port),
                user = coalesce(excluded.user, host_access.user)",
            params![addr.to_string(), access.port, access.user],
        )?;
        Ok(())
    }

    /// Every recorded way to reach a host, by address.
    pub fn all_access(&self) -> Result<BTreeMap<IpAddr, HostAccess>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT address, port, user FROM host_access")?;
        let mut rows = stmt.query([])?;
        let mut all = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let addr: String = row.get(0)?;
            let Ok(addr) = addr.parse() else { continue };
            all.insert(
                addr,
                HostAccess {
                    port: row.get(1)?,
                    user: row.get(2)?,
                },
            );
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_set_replaced_and_removed() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let tag = |k: &str, v: &str| (k.to_string(), v.to_string());
        inv.tag(&[a, b], &[tag("role", "web"), tag("canary", "")])
            .unwrap();
        inv.tag(&[a], &[tag("role", "db")]).unwrap();
        let all = inv.all_tags().unwrap();
        assert_eq!(all[&a]["role"], "db");
        assert_eq!(all[&b]["role"], "web");
        assert_eq!(all[&b]["canary"], "");
        assert_eq!(inv.untag(&[a, b], &["canary".into()]).unwrap(), 2);
        assert_eq!(inv.untag(&[a], &["nope".into()]).unwrap(), 0);
        let all = inv.all_tags().unwrap();
        assert_eq!(all[&a].len(), 1);
        assert!(!all[&b].contains_key("canary"));
    }

    #[test]
    fn access_keeps_what_a_later_import_leaves_unset() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        inv.set_access(
            a,
            &HostAccess {
                port: Some(2222),
                user: Some("ops".into()),
            },
        )
        .unwrap();
        inv.set_access(
            a,
            &HostAccess {
                port: None,
                user: Some("root".into()),
            },
        )
        .unwrap();
        assert_eq!(
            inv.all_access().unwrap()[&a],
            HostAccess {
                port: Some(2222),
                user: Some("root".into())
            }
        );
    }
}
