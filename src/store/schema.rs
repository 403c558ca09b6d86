//! Schema migrations, applied in order and counted in `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each entry moves the schema one version up. Never edit a shipped entry.
const MIGRATIONS: &[&str] = &[
    // 1: scans and the hosts they found.
    "CREATE TABLE scans (
        id INTEGER PRIMARY KEY,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        targets TEXT NOT NULL,
        method TEXT NOT NULL,
        alive INTEGER,
        silent INTEGER,
        interrupted INTEGER
    );
    CREATE TABLE hosts (
        addr TEXT PRIMARY KEY,
        name TEXT,
        reach TEXT NOT NULL,
        via TEXT,
        rtt_ms REAL,
        open_ports TEXT,
        ssh_banner TEXT,
        first_seen INTEGER,
        last_seen INTEGER,
        last_scanned INTEGER NOT NULL,
        last_scan INTEGER NOT NULL REFERENCES scans (id)
    );",
    // Facts learned over SSH, per address and port: the last attempt's
    // outcome, and the facts and host key of the last one that succeeded.
    "CREATE TABLE host_facts (
        address TEXT NOT NULL,
        port INTEGER NOT NULL,
        host TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        checked_at INTEGER NOT NULL,
        host_key TEXT,
        facts TEXT,
        gathered_at INTEGER,
        PRIMARY KEY (address, port)
    );",
    // The control plane's registry: one row per registered host, keyed by
    // the host its join token was bound to (hostnames repeat across cloned
    // machines; the name or address the operator enrolled does not), and the
    // join tokens already used, kept until they expire so a replay is
    // refused across restarts.
    "CREATE TABLE agents (
        agent_id TEXT PRIMARY KEY,
        bound_host TEXT NOT NULL UNIQUE,
        hostname TEXT NOT NULL,
        addresses TEXT NOT NULL,
        stats_port INTEGER NOT NULL,
        agent_version TEXT NOT NULL,
        registered_at INTEGER NOT NULL,
        last_heartbeat_at INTEGER,
        identity_expires_at INTEGER NOT NULL,
        certificate_expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE used_join_tokens (
        jti TEXT PRIMARY KEY,
        used_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        agent_id TEXT NOT NULL
    );",
    // What deploy last did per host (address and SSH port): the build, the
    // agent state it left, and the step reached or failed in.
    "CREATE TABLE deployments (
        address TEXT NOT NULL,
        port INTEGER NOT NULL,
        host TEXT NOT NULL,
        build TEXT,
        state TEXT NOT NULL,
        step TEXT,
        error TEXT,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (address, port)
    );",
    // Trust: the certificates the CA gave each agent (what an agent must
    // show, and what the CRL names once revoked), kept until they expire;
    // and the tokens minted for people (`fleetctl token operator|stats|sd`),
    // listed and revoked by id. Agents registered before this version have
    // no certificate on record and enroll again.
    "CREATE TABLE agent_certs (
        serial TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        not_after INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX agent_certs_by_agent ON agent_certs (agent_id);
    CREATE TABLE issued_tokens (
        jti TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    );",
    // The audit trail: every command run on hosts (`fleetctl run`, the
    // console's `!`), who ran it from here and when, and how each host
    // ended. Recorded before the first host starts (finished_at NULL
    // until it ends), so a run cut short still leaves its trace. Output
    // is not kept: it may be large, or secret.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        local_user TEXT NOT NULL,
        command TEXT NOT NULL,
        sudo INTEGER NOT NULL,
        hosts TEXT NOT NULL,
        summary TEXT
    );
    CREATE TABLE run_hosts (
        run INTEGER NOT NULL REFERENCES runs (id),
        host TEXT NOT NULL,
        address TEXT NOT NULL,
        exit INTEGER,
        error_class TEXT
    );
    CREATE INDEX run_hosts_by_address ON run_hosts (address);",
    // Tags operators put on hosts (`fleetctl tag`), one row per key; and how
    // to reach a host over SSH when a file said so (`fleetctl inventory
    // import`: Ansible's ansible_port and ansible_user).
    "CREATE TABLE host_tags (
        address TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (address, key)
    );
    CREATE TABLE host_access (
        address TEXT PRIMARY KEY,
        port INTEGER,
        user TEXT
    );",
    // A deploy's plan and progress, so one a crash or a quit cut short goes
    // on where it stopped (`fleetctl deploy --resume`): its rules, and each
    // host's batch and whether it is done.
    "CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        started_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        canary INTEGER NOT NULL,
        max_failures INTEGER,
        stop_on_failure INTEGER NOT NULL,
        gate INTEGER NOT NULL
    );
    CREATE TABLE rollout_hosts (
        rollout INTEGER NOT NULL REFERENCES rollouts (id),
        idx INTEGER NOT NULL,
        host TEXT NOT NULL,
        batch INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (rollout, idx)
    );",
];

pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as u32;
    loop {
        // Each step under the write lock, the version read inside it: two
        // processes (or tasks) opening a new file at once apply it once.
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let found: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found > known {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
                known,
            });
        }
        let Some(sql) = MIGRATIONS.get(found as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}
