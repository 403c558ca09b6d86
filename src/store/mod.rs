//! The inventory: what fleetctl knows about hosts, in SQLite in the data dir,
//! shared by every command and the console.

mod deployments;
mod facts;
pub mod registry;
mod rollouts;
mod runs;
mod schema;
mod tags;

pub use deployments::Deployment;
pub use facts::StoredFacts;
pub use rollouts::{HostState, RolloutHost, StoredRollout};
pub use runs::{RunHost, RunRecord};
pub use tags::HostAccess;

use crate::model::time::now_unix;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{HostScan, Reach};

/// Each message holds its cause's words, so no variant also returns it as
/// its `source()`: the CLI would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the inventory {}: {cause}", path.display())]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("cannot create the data directory {}: {cause}", path.display())]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the inventory {} has schema version {found}, newer than this fleetctl knows ({known}); use a newer fleetctl",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(
        "the registry database has schema version {found}, newer than this fleetctl knows ({known}); use a newer fleetctl"
    )]
    DatabaseTooNew { found: u32, known: u32 },
    /// The registry's PostgreSQL database: unreachable, refused, or a
    /// statement failed (the text says which).
    #[error("registry database: {0}")]
    Database(String),
    #[error("cannot encode a value for the inventory: {0}")]
    Encode(String),
    #[error("inventory query failed: {0}")]
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e)
    }
}

/// Identifies one recorded scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanId(pub i64);

/// A host as the inventory knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHost {
    pub scan: HostScan,
    /// Unix seconds when it was first, and last, seen alive.
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Unix seconds of the last scan that probed it, and that scan's id.
    pub last_scanned: i64,
    pub last_scan: ScanId,
}

/// An open inventory.
#[derive(Debug)]
pub struct Inventory {
    conn: Connection,
}

impl Inventory {
    /// Opens (creating if needed) the inventory at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: open_db(path)?,
        })
    }

    /// An inventory that lives only as long as this value (for tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        schema::migrate(&conn, Path::new(":memory:"))?;
        Ok(Self { conn })
    }

    /// Records that a scan started.
    pub fn begin_scan(&mut self, targets: &str, method: &str) -> Result<ScanId, StoreError> {
        self.conn.execute(
            "INSERT INTO scans (started_at, targets, method) VALUES (?1, ?2, ?3)",
            params![now_unix(), targets, method],
        )?;
        Ok(ScanId(self.conn.last_insert_rowid()))
    }

    /// Records a scan's outcome for each host, in one transaction. Live hosts
    /// are added or updated; silent ones only update hosts already known, so
    /// scanning a mostly empty range does not fill the inventory with nothing.
    pub fn record_hosts(&mut self, scan: ScanId, hosts: &[HostScan]) -> Result<(), StoreError> {
        let now = now_unix();
        let tx = self.conn.transaction()?;
        {
            let mut upsert_alive = tx.prepare_cached(
                "INSERT INTO hosts (addr, name, reach, via, rtt_ms, open_ports, ssh_banner,
                                    first_seen, last_seen, last_scanned, last_scan)
                 VALUES (?1, ?2, 'alive', ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?8)
                 ON CONFLICT (addr) DO UPDATE SET
                    name = coalesce(excluded.name, hosts.name),
                    reach = 'alive', via = excluded.via, rtt_ms = excluded.rtt_ms,
                    open_ports = excluded.open_ports, ssh_banner = excluded.ssh_banner,
                    first_seen = coalesce(hosts.first_seen, excluded.first_seen),
                    last_seen = excluded.last_seen, last_scanned = excluded.last_scanned,
                    last_scan = excluded.last_scan",
            )?;
            let mut mark_silent = tx.prepare_cached(
                "UPDATE hosts SET reach = 'silent', via = NULL, rtt_ms = NULL,
                        last_scanned = ?2, last_scan = ?3
                 WHERE addr = ?1",
            )?;
            for host in hosts {
                let addr = host.addr.to_string();
                match host.reach {
                    Reach::Alive => {
                        let ports = ports_text(&host.open_ports);
                        upsert_alive.execute(params![
                            addr,
                            host.name,
                            host.via.map(|v| v.to_string()),
                            host.rtt_ms,
                            ports,
                            host.ssh_banner,
                            now,
                            scan.0
                        ])?;
                    }
                    Reach::Silent => {
                        mark_silent.execute(params![addr, now, scan.0])?;
                    }
                    Reach::Unknown => {}
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds hosts known from a list (`source` names it) rather than found
    /// by a scan: reach unknown until one probes them. The list is recorded
    /// as a scan of method `list`; hosts already known are left as they are.
    pub fn add_listed(
        &mut self,
        source: &str,
        hosts: &[(IpAddr, Option<String>)],
    ) -> Result<(), StoreError> {
        let now = now_unix();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO scans (started_at, finished_at, targets, method, alive, silent, interrupted)
             VALUES (?1, ?1, ?2, 'list', 0, 0, 0)",
            params![now, source],
        )?;
        let scan = tx.last_insert_rowid();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO hosts (addr, name, reach, last_scanned, last_scan)
                 VALUES (?1, ?2, 'unknown', ?3, ?4)
                 ON CONFLICT (addr) DO NOTHING",
            )?;
            for (addr, name) in hosts {
                insert.execute(params![addr.to_string(), name, now, scan])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records how a scan ended.
    pub fn finish_scan(
        &mut self,
        scan: ScanId,
        alive: usize,
        silent: usize,
        interrupted: bool,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE scans SET finished_at = ?2, alive = ?3, silent = ?4, interrupted = ?5
             WHERE id = ?1",
            params![scan.0, now_unix(), count(alive), count(silent), interrupted],
        )?;
        Ok(())
    }

    /// Every known host, in address order (numeric, so sorted here: the
    /// stored text would put 127.0.0.10 before 127.0.0.2).
    pub fn hosts(&self) -> Result<Vec<StoredHost>, StoreError> {
        let mut stmt = self.conn.prepare_cached(SELECT_HOST)?;
        let rows = stmt.query_map([], row_to_host)?;
        let mut hosts = rows.collect::<Result<Vec<_>, _>>()?;
        hosts.sort_by_key(|h| h.scan.addr);
        Ok(hosts)
    }

    /// One host, if known.
    pub fn host(&self, addr: IpAddr) -> Result<Option<StoredHost>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_HOST} WHERE addr = ?1"))?;
        Ok(stmt.query_row([addr.to_string()], row_to_host).optional()?)
    }
}

/// Opens (creating if needed) the database at `path`, migrated to the
/// current schema.
fn open_db(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let conn = Connection::open(path).map_err(|cause| StoreError::Open {
        path: path.to_owned(),
        cause,
    })?;
    // Several commands (and the console) may use it at once.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    schema::migrate(&conn, path)?;
    Ok(conn)
}

const SELECT_HOST: &str = "SELECT addr, name, reach, via, rtt_ms, open_ports, ssh_banner,
                                  first_seen, last_seen, last_scanned, last_scan FROM hosts";

fn row_to_host(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredHost> {
    let text_err = |i: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    };
    let addr: String = row.get(0)?;
    let reach: String = row.get(2)?;
    let via: Option<String> = row.get(3)?;
    let ports: Option<String> = row.get(5)?;
    Ok(StoredHost {
        scan: HostScan {
            addr: addr.parse().map_err(|e| text_err(0, format!("{e}")))?,
            name: row.get(1)?,
            reach: Reach::parse(&reach).ok_or_else(|| text_err(2, reach.clone()))?,
            via: via
                .map(|v| v.parse())
                .transpose()
                .map_err(|e| text_err(3, e))?,
            rtt_ms: row.get(4)?,
            open_ports: ports
                .unwrap_or_default()
                .split(',')
                .filter_map(|p| p.parse().ok())
                .collect(),
            ssh_banner: row.get(6)?,
        },
        first_seen: row.get(7)?,
        last_seen: row.get(8)?,
        last_scanned: row.get(9)?,
        last_scan: ScanId(row.get(10)?),
    })
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ports_text(ports: &[u16]) -> Option<String> {
    (!ports.is_empty()).then(|| {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Creates `dir` (and parents) readable by the owner only: the inventory
/// and, later, keys and tokens live here.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|cause| StoreError::CreateDir {
            path: dir.to_owned(),
            cause,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Via;

    fn alive(addr: &str, via: Via) -> HostScan {
        let mut h = HostScan::new(addr.parse().unwrap(), Reach::Alive);
        h.via = Some(via);
        h.rtt_ms = Some(0.5);
        h
    }

    #[test]
    fn listed_hosts_are_unknown_until_a_scan_marks_them_silent() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let listed = |a: &str, n: &str| (a.parse().unwrap(), Some(n.to_string()));
        inv.add_listed(
            "demo",
            &[listed("127.0.0.1", "a"), listed("127.0.0.2", "b")],
        )
        .unwrap();
        let hosts = inv.hosts().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].scan.reach, Reach::Unknown);
        assert_eq!(hosts[1].scan.name.as_deref(), Some("b"));
        let scan = inv.begin_scan("127.0.0.0/30", "tcp").unwrap();
        inv.record_hosts(
            scan,
            &[HostScan::new("127.0.0.2".parse().unwrap(), Reach::Silent)],
        )
        .unwrap();
        // Listing again changes nothing a scan learned.
        inv.add_listed("demo", &[listed("127.0.0.2", "c")]).unwrap();
        let b = inv.host("127.0.0.2".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (b.scan.reach, b.scan.name.as_deref()),
            (Reach::Silent, Some("b"))
        );
    }

    #[test]
    fn rescanning_updates_rather_than_duplicates() {
        let mut inv = Inventory::open_in_memory().unwrap();
        let first = inv.begin_scan("127.0.0.0/30", "icmp").unwrap();
        let mut ssh = alive("127.0.0.1", Via::Tcp(22));
        ssh.open_ports = vec![22];
        ssh.ssh_banner = Some("SSH-2.0-OpenSSH_9.2p1".into());
        inv.record_hosts(
            first,
            &[
                ssh.clone(),
                alive("127.0.0.2", Via::Icmp),
                HostScan::new("127.0.0.3".parse().unwrap(), Reach::Silent),
            ],
        )
        .unwrap();
        assert_eq!(
            inv.hosts().unwrap().len(),
            2,
            "silent unknown hosts are not stored"
        );
        let stored = inv.host("127.0.0.1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(stored.scan, ssh);

        let second = inv.begin_scan("127.0.0.0/30", "icmp").unwrap();
        inv.record_hosts(
            second,
            &[
                alive("127.0.0.1", Via::Icmp),
                HostScan::new("127.0.0.2".parse().unwrap(), Reach::Silent),
            ],
        )
        .unwrap();
        let hosts = inv.hosts().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].scan.via, Some(Via::Icmp));
        assert_eq!(hosts[0].last_scan, second);
        assert_eq!(hosts[1].scan.reach, Reach::Silent);
        assert!(hosts[1].last_seen.is_some(), "last seen alive is kept");
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/inventory.sqlite3");
        {
            let mut inv = Inventory::open(&path).unwrap();
            let scan = inv.begin_scan("127.0.0.1", "tcp").unwrap();
            inv.record_hosts(scan, &[alive("127.0.0.1", Via::Tcp(80))])
                .unwrap();
            inv.finish_scan(scan, 1, 0, false).unwrap();
        }
        let inv = Inventory::open(&path).unwrap();
        assert_eq!(inv.hosts().unwrap()[0].scan.via, Some(Via::Tcp(80)));
    }

    #[test]
    fn a_new_file_opened_by_many_at_once_is_set_up_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.sqlite3");
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Inventory::open(&path).map(|_| ()))
            })
            .collect();
        for open in opened {
            open.join().unwrap().unwrap();
        }
        assert!(Inventory::open(&path).unwrap().hosts().unwrap().is_empty());
    }
}
