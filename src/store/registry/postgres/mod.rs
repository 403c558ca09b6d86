//! The registry in PostgreSQL, shared by every `fleetctl serve` replica
//! pointed at it: the same tables and rules as the SQLite registry, with
//! what must hold across replicas enforced by the database (a join token's
//! one use in the transaction that stores its agent; revocations seen by
//! every replica's next statement). A heartbeat is one statement.

pub mod schema;
pub mod tls;
mod tokens;

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{CertRow, NewAgent, Refusal, Registration, RenewOutcome, registration_state};
use crate::model::control::AgentRecord;
use crate::store::StoreError;

/// Connections each control plane keeps to the database at most.
pub const POOL_SIZE: usize = 16;
/// Connecting, and any one statement, give up after this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the registry's database is and how to reach it.
#[derive(Clone)]
pub struct PgSettings {
    /// `postgres://user@host:port/dbname?sslmode=...` (a password in it
    /// works, but `password` keeps it out of the config file).
    pub url: String,
    /// The CA that signed the server's certificate (PEM): with it, TLS is
    /// used (and required when `sslmode=require`); the server must show a
    /// certificate for the URL's host.
    pub ca_pem: Option<String>,
    pub password: Option<String>,
    pub pool_size: usize,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redacted(&self.url))
            .field("tls", &self.ca_pem.is_some())
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// The URL with any password left out, for messages and logs.
#[must_use]
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<a PostgreSQL URL that does not parse>".to_owned(),
    }
}

/// A database error with its cause (tokio-postgres's own text is terse).
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> StoreError {
    let detail = e.as_db_error().map_or_else(
        || e.to_string(),
        |db| format!("{}: {}", db.code().code(), db.message()),
    );
    StoreError::Database(detail)
}

fn pool_error(e: &deadpool_postgres::PoolError) -> StoreError {
    StoreError::Database(format!("no connection to the database: {e}"))
}

/// The registry in one PostgreSQL database.
pub struct PgRegistry {
    pool: Pool,
    /// The URL without its password.
    pub target: String,
}

impl std::fmt::Debug for PgRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRegistry")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgRegistry {
    /// A pool of connections to the database, and one connection made at
    /// once, so a wrong URL, password or CA is said at start.
    pub async fn connect(settings: &PgSettings) -> Result<Self, StoreError> {
        let target = redacted(&settings.url);
        let mut config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|e| StoreError::Database(format!("{target} is not a PostgreSQL URL: {e}")))?;
        if let Some(password) = &settings.password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(TIMEOUT);
        }
        if config.get_options().is_none() {
            config.options(format!("-c statement_timeout={}", TIMEOUT.as_millis()));
        }
        if config.get_application_name().is_none() {
            config.application_name("fleetctl");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if let Some(ca_pem) = &settings.ca_pem {
            let tls = crate::pki::tls::client_config_trusting(ca_pem)
                .map_err(|e| StoreError::Database(format!("the database CA: {e}")))?;
            Manager::from_config(config, tls::RustlsConnector::new(tls), manager_config)
        } else {
            if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                return Err(StoreError::Database(format!(
                    "{target} asks for sslmode=require: name the CA that signed the \
                     database's certificate (control.registry_ca_file)"
                )));
            }
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database(format!("cannot set up the connection pool: {e}")))?;
        let registry = Self { pool, target };
        drop(registry.client().await?);
        Ok(registry)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| pool_error(&e))
    }

    /// Applies the schema versions this fleetctl knows and the database
    /// lacks, once, however many replicas start at the same time.
    pub async fn migrate(&self) -> Result<(u32, u32), StoreError> {
        let mut client = self.client().await?;
        schema::migrate(&mut client).await
    }

    /// The schema version the database is at; also what `/healthz` asks.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.client().await?).await
    }

    /// As the SQLite registry's `register`: the token's use, `sign`, and the
    /// agent are one transaction; a second replica handed the same token at
    /// the same instant waits on the first's row, then finds it used.
    pub async fn register<T, E>(
        &self,
        agent: &NewAgent,
        jti: &str,
        jti_expires_at: i64,
        now: i64,
        sign: impl FnOnce() -> Result<(CertRow, T), E>,
    ) -> Result<Result<Registration<T>, E>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
        exec(
            &tx,
            "DELETE FROM used_join_tokens WHERE expires_at < $1",
            &[&now],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        exec(&tx, "DELETE FROM agent_certs WHERE not_after < $1", &[&now])
            .await
            .map_err(|e| pg_error(&e))?;
        let fresh = exec(
            &tx,
            "INSERT INTO used_join_tokens (jti, used_at, expires_at, agent_id)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
            &[&jti, &now, &jti_expires_at, &agent.agent_id],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        if fresh == 0 {
            return Ok(Ok(Registration::Replayed));
        }
        let (cert, signed) = match sign() {
            Ok(done) => done,
            // Dropping the transaction rolls the token's use back.
            Err(e) => return Ok(Err(e)),
        };
        let replaced: Option<String> = query_opt(
            &tx,
            "DELETE FROM agents WHERE bound_host = $1 RETURNING agent_id",
            &[&agent.bound_host],
        )
        .await
        .map_err(|e| pg_error(&e))?
        .map(|row| row.get(0));
        if let Some(old) = &replaced {
            exec(
                &tx,
                "UPDATE agent_certs SET revoked_at = $2 WHERE agent_id = $1 AND revoked_at IS NULL",
                &[old, &now],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        }
        let port = i32::from(agent.stats_port);
        exec(
            &tx,
            "INSERT INTO agents (agent_id, bound_host, hostname, addresses, stats_port,
                                 agent_version, registered_at, identity_expires_at,
                                 certificate_expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &agent.agent_id,
                &agent.bound_host,
                &agent.hostname,
                &agent.addresses.join(","),
                &port,
                &agent.agent_version,
                &now,
                &agent.identity_expires_at,
                &cert.not_after,
            ],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        exec(
            &tx,
            "INSERT INTO agent_certs (serial, agent_id, not_after) VALUES ($1, $2, $3)",
            &[&cert.serial, &agent.agent_id, &cert.not_after],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        tx.commit().await.map_err(|e| pg_error(&e))?;
        Ok(Ok(Registration::Stored { replaced, signed }))
    }

    pub async fn get(
        &self,
        agent_id: &str,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_AGENT} WHERE agent_id = $1"))
            .await
            .map_err(|e| pg_error(&e))?;
        let row = client
            .query_opt(&stmt, &[&agent_id])
            .await
            .map_err(|e| pg_error(&e))?;
        row.map(|r| row_to_record(&r, now, lost_after)).transpose()
    }

    pub async fn list(
        &self,
        now: i64,
        lost_after: Duration,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_AGENT} ORDER BY hostname, agent_id"))
            .await
            .map_err(|e| pg_error(&e))?;
        client
            .query(&stmt, &[])
            .await
            .map_err(|e| pg_error(&e))?
            .iter()
            .map(|r| row_to_record(r, now, lost_after))
            .collect()
    }

    /// One statement when it is accepted; a second only to say why not.
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        cert_serial: Option<&str>,
        agent_version: &str,
        now: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE agents SET last_heartbeat_at = $2, agent_version = $3
                 WHERE agent_id = $1 AND revoked_at IS NULL AND {}",
                holds_cert("$1", "$2", "$4")
            ))
            .await
            .map_err(|e| pg_error(&e))?;
        let updated = client
            .execute(&stmt, &[&agent_id, &now, &agent_version, &cert_serial])
            .await
            .map_err(|e| pg_error(&e))?;
        if updated == 1 {
            Ok(Ok(()))
        } else {
            refusal(&client, agent_id).await.map(Err)
        }
    }

    /// As the SQLite registry's `renew_signed`: the check, the signing (for
    /// the names on record) and the update in one transaction.
    pub async fn renew<T, E>(
        &self,
        agent_id: &str,
        cert_serial: Option<&str>,
        identity_expires_at: i64,
        now: i64,
        sign: impl FnOnce(&[String]) -> Result<Option<(CertRow, T)>, E>,
    ) -> Result<RenewOutcome<T, E>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
        let addresses: Option<String> = query_opt(
            &tx,
            &format!(
                "SELECT addresses FROM agents
                     WHERE agent_id = $1 AND revoked_at IS NULL AND {}
                     FOR UPDATE",
                holds_cert("$1", "$2", "$3")
            ),
            &[&agent_id, &now, &cert_serial],
        )
        .await
        .map_err(|e| pg_error(&e))?
        .map(|row| row.get(0));
        let Some(addresses) = addresses else {
            drop(tx);
            return Ok(RenewOutcome::Refused(refusal(&client, agent_id).await?));
        };
        let names = split_addresses(&addresses);
        let (cert, signed) = match sign(&names) {
            Ok(Some((cert, signed))) => (Some(cert), Some(signed)),
            Ok(None) => (None, None),
            Err(e) => return Ok(RenewOutcome::SignFailed(e)),
        };
        exec(
            &tx,
            "UPDATE agents SET identity_expires_at = $2,
                    certificate_expires_at = coalesce($3, certificate_expires_at)
             WHERE agent_id = $1",
            &[
                &agent_id,
                &identity_expires_at,
                &cert.as_ref().map(|c| c.not_after),
            ],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        if let Some(cert) = &cert {
            exec(
                &tx,
                "INSERT INTO agent_certs (serial, agent_id, not_after) VALUES ($1, $2, $3)",
                &[&cert.serial, &agent_id, &cert.not_after],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        }
        tx.commit().await.map_err(|e| pg_error(&e))?;
        Ok(RenewOutcome::Renewed { signed })
    }

    pub async fn revoke(
        &self,
        agent_id: &str,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
        exec(
            &tx,
            "UPDATE agents SET revoked_at = coalesce(revoked_at, $2) WHERE agent_id = $1",
            &[&agent_id, &now],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        exec(
            &tx,
            "UPDATE agent_certs SET revoked_at = $2 WHERE agent_id = $1 AND revoked_at IS NULL",
            &[&agent_id, &now],
        )
        .await
        .map_err(|e| pg_error(&e))?;
        tx.commit().await.map_err(|e| pg_error(&e))?;
        drop(client);
        self.get(agent_id, now, lost_after).await
    }

    pub async fn revoked_certs(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT serial, revoked_at FROM agent_certs
                 WHERE revoked_at IS NOT NULL AND not_after >= $1 ORDER BY serial",
                &[&now],
            )
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// Runs `sql` as a statement prepared once per connection (a round trip
/// less than an unnamed one, every time after the first).
async fn exec(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, params).await
}

/// As [`exec`], for a query answering at most one row.
async fn query_opt(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query_opt(&statement, params).await
}

/// "The connection showed a live certificate of this agent's", with the
/// placeholders for the agent id, now and the serial shown (PostgreSQL
/// wants every placeholder of a statement used).
fn holds_cert(agent: &str, now: &str, serial: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM agent_certs c WHERE c.serial = {serial} AND c.agent_id = {agent}
         AND c.revoked_at IS NULL AND c.not_after >= {now})"
    )
}

const SELECT_AGENT: &str = "SELECT agent_id, hostname, addresses, stats_port, agent_version,
        registered_at, last_heartbeat_at, identity_expires_at, certificate_expires_at, revoked_at
        FROM agents";

async fn refusal(client: &Object, agent_id: &str) -> Result<Refusal, StoreError> {
    let revoked: Option<Option<i64>> = client
        .query_opt(
            "SELECT revoked_at FROM agents WHERE agent_id = $1",
            &[&agent_id],
        )
        .await
        .map_err(|e| pg_error(&e))?
        .map(|row| row.get(0));
    Ok(match revoked {
        Some(Some(_)) => Refusal::Revoked,
        Some(None) => Refusal::Certificate,
        None => Refusal::Unknown,
    })
}

fn split_addresses(addresses: &str) -> Vec<String> {
    addresses
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn row_to_record(row: &Row, now: i64, lost_after: Duration) -> Result<AgentRecord, StoreError> {
    let addresses: String = row.get(2);
    let port: i32 = row.get(3);
    let registered_at: i64 = row.get(5);
    let last_heartbeat_at: Option<i64> = row.get(6);
    let identity_expires_at: i64 = row.get(7);
    let revoked_at: Option<i64> = row.get(9);
    Ok(AgentRecord {
        agent_id: row.get(0),
        hostname: row.get(1),
        addresses: split_addresses(&addresses),
        stats_port: u16::try_from(port)
            .map_err(|_| StoreError::Database(format!("stats port {port} out of range")))?,
        agent_version: row.get(4),
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
        certificate_expires_at: row.get(8),
        revoked_at,
    })
}
