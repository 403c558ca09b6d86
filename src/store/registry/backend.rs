//! The registry the control plane uses, whichever database holds it: the
//! embedded SQLite file (one control plane) or PostgreSQL (replicas).
//! Same calls, same rules: the suite in `tests/registry_backends.rs` runs
//! against both. SQLite calls run off the async threads, one connection
//! behind a lock; PostgreSQL calls use a pool.
//!
//! Agents' calls (register, renew, heartbeat) also return the revoked
//! token ids, which ride on every answer: cached, read again when another
//! process changed the SQLite file, or at most [`SHARED_REVOKED_CACHE`]
//! after the last read from PostgreSQL (another replica may have written).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::postgres::{PgRegistry, PgSettings};
use super::{CertRow, NewAgent, Refusal, Registration, Registry, RenewOutcome};
use crate::model::control::{AgentRecord, RegistryHealth, TokenRecord};
use crate::store::StoreError;

/// A cached list of revoked tokens from SQLite is read again after this
/// at the latest (sooner whenever another process changed the file).
const LOCAL_REVOKED_CACHE: Duration = Duration::from_secs(30);
/// From PostgreSQL, after this: another replica may have revoked one.
pub const SHARED_REVOKED_CACHE: Duration = Duration::from_secs(1);
/// `/healthz` asks the database at most this often.
const HEALTH_CACHE: Duration = Duration::from_secs(1);

/// Ids of revoked tokens that have not expired.
pub type Revoked = Arc<HashSet<String>>;

struct RevokedCache {
    /// SQLite's data version when read (PostgreSQL: none).
    stamp: Option<i64>,
    read_at: Instant,
    ids: Revoked,
}

enum Kind {
    Sqlite(Arc<Mutex<Registry>>),
    Postgres(PgRegistry),
}

/// The registry behind the control plane's API.
pub struct Backend {
    kind: Kind,
    revoked: Mutex<Option<RevokedCache>>,
    health: Mutex<Option<(Instant, RegistryHealth)>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("backend", &self.name())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend {
    fn with(kind: Kind) -> Self {
        Self {
            kind,
            revoked: Mutex::new(None),
            health: Mutex::new(None),
        }
    }

    /// The registry in the SQLite file at `path` (created and migrated if needed).
    pub fn sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::with(Kind::Sqlite(Arc::new(Mutex::new(
            Registry::open(path)?,
        )))))
    }

    /// A registry that lives as long as this value (tests).
    pub fn sqlite_in_memory() -> Result<Self, StoreError> {
        Ok(Self::with(Kind::Sqlite(Arc::new(Mutex::new(
            Registry::open_in_memory()?,
        )))))
    }

    /// The registry in PostgreSQL, its schema brought up to date first
    /// (once, under an advisory lock, whatever other replicas do).
    pub async fn postgres(settings: &PgSettings) -> Result<Self, StoreError> {
        let registry = PgRegistry::connect(settings).await?;
        registry.migrate().await?;
        Ok(Self::with(Kind::Postgres(registry)))
    }

    /// The PostgreSQL registry without migrating (`fleetctl registry
    /// migrate` does that itself).
    pub async fn postgres_unmigrated(settings: &PgSettings) -> Result<PgRegistry, StoreError> {
        PgRegistry::connect(settings).await
    }

    /// `sqlite` or `postgres`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite(_) => "sqlite",
            Kind::Postgres(_) => "postgres",
        }
    }

    /// Runs `f` on the SQLite registry off the async threads.
    async fn on_sqlite<T: Send + 'static>(
        registry: &Arc<Mutex<Registry>>,
        f: impl FnOnce(&mut Registry) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let registry = Arc::clone(registry);
        tokio::task::spawn_blocking(move || f(&mut lock(&registry)))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The cached revoked ids when still good for `stamp` (SQLite's data
    /// version; `None` for PostgreSQL, where only age counts).
    fn cached_revoked(&self, stamp: Option<i64>) -> Option<Revoked> {
        let cache = lock(&self.revoked);
        let c = cache.as_ref()?;
        let max_age = if stamp.is_some() {
            LOCAL_REVOKED_CACHE
        } else {
            SHARED_REVOKED_CACHE
        };
        (c.stamp == stamp && c.read_at.elapsed() < max_age).then(|| Arc::clone(&c.ids))
    }

    fn cache_revoked(&self, stamp: Option<i64>, ids: Vec<String>) -> Revoked {
        let ids: Revoked = Arc::new(ids.into_iter().collect());
        *lock(&self.revoked) = Some(RevokedCache {
            stamp,
            read_at: Instant::now(),
            ids: Arc::clone(&ids),
        });
        ids
    }

    /// On SQLite: runs `f`, then, in the same trip off the async threads,
    /// reads the revoked ids if the cache is stale.
    async fn sqlite_then_revoked<T: Send + 'static>(
        &self,
        registry: &Arc<Mutex<Registry>>,
        now: i64,
        f: impl FnOnce(&mut Registry) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, Revoked), StoreError> {
        let cached = lock(&self.revoked)
            .as_ref()
            .filter(|c| c.read_at.elapsed() < LOCAL_REVOKED_CACHE)
            .and_then(|c| c.stamp);
        let (value, stamp, fresh) = Self::on_sqlite(registry, move |reg| {
            let value = f(reg)?;
            let stamp = reg.data_version()?;
            let fresh = if Some(stamp) == cached {
                None
            } else {
                Some(reg.revoked_tokens(now)?)
            };
            Ok((value, stamp, fresh))
        })
        .await?;
        let revoked = match fresh {
            Some(ids) => self.cache_revoked(Some(stamp), ids),
            None => {
                if let Some(ids) = self.cached_revoked(Some(stamp)) {
                    ids
                } else {
                    // Replaced meanwhile by another call's read: read once more.
                    let ids = Self::on_sqlite(registry, move |reg| reg.revoked_tokens(now)).await?;
                    self.cache_revoked(Some(stamp), ids)
                }
            }
        };
        Ok((value, revoked))
    }

    /// Ids of revoked tokens not yet expired (cached, see the module doc).
    pub async fn revoked_tokens(&self, now: i64) -> Result<Revoked, StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => Ok(self.sqlite_then_revoked(reg, now, |_| Ok(())).await?.1),
            Kind::Postgres(pg) => {
                if let Some(cached) = self.cached_revoked(None) {
                    return Ok(cached);
                }
                let ids = pg.revoked_tokens(now).await?;
                Ok(self.cache_revoked(None, ids))
            }
        }
    }

    async fn shared_revoked(&self, pg: &PgRegistry, now: i64) -> Result<Revoked, StoreError> {
        if let Some(cached) = self.cached_revoked(None) {
            return Ok(cached);
        }
        let ids = pg.revoked_tokens(now).await?;
        Ok(self.cache_revoked(None, ids))
    }

    /// Stores a registration made with the join token `jti` (see
    /// [`Registry::register`]: the token's one use, `sign` and the agent in
    /// one transaction).
    pub async fn register<T, E>(
        &self,
        agent: NewAgent,
        jti: String,
        jti_expires_at: i64,
        now: i64,
        sign: impl FnOnce() -> Result<(CertRow, T), E> + Send + 'static,
    ) -> Result<(Result<Registration<T>, E>, Revoked), StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        match &self.kind {
            Kind::Sqlite(reg) => {
                self.sqlite_then_revoked(reg, now, move |reg| {
                    reg.register(&agent, &jti, jti_expires_at, now, sign)
                })
                .await
            }
            Kind::Postgres(pg) => {
                let outcome = pg.register(&agent, &jti, jti_expires_at, now, sign).await?;
                Ok((outcome, self.shared_revoked(pg, now).await?))
            }
        }
    }

    /// Records a heartbeat (one statement), unless the agent is unknown or
    /// revoked, or did not show a live certificate of its own.
    pub async fn heartbeat(
        &self,
        agent_id: String,
        cert_serial: Option<String>,
        agent_version: String,
        now: i64,
    ) -> Result<Result<Revoked, Refusal>, StoreError> {
        let (outcome, revoked) = match &self.kind {
            Kind::Sqlite(reg) => {
                self.sqlite_then_revoked(reg, now, move |reg| {
                    reg.heartbeat(&agent_id, cert_serial.as_deref(), &agent_version, now)
                })
                .await?
            }
            Kind::Postgres(pg) => {
                let outcome = pg
                    .heartbeat(&agent_id, cert_serial.as_deref(), &agent_version, now)
                    .await?;
                if let Err(refusal) = outcome {
                    return Ok(Err(refusal));
                }
                (outcome, self.shared_revoked(pg, now).await?)
            }
        };
        Ok(outcome.map(|()| revoked))
    }

    /// A renewal (see [`Registry::renew_signed`]).
    pub async fn renew<T, E>(
        &self,
        agent_id: String,
        cert_serial: Option<String>,
        identity_expires_at: i64,
        now: i64,
        sign: impl FnOnce(&[String]) -> Result<Option<(CertRow, T)>, E> + Send + 'static,
    ) -> Result<(RenewOutcome<T, E>, Revoked), StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        match &self.kind {
            Kind::Sqlite(reg) => {
                self.sqlite_then_revoked(reg, now, move |reg| {
                    reg.renew_signed(
                        &agent_id,
                        cert_serial.as_deref(),
                        identity_expires_at,
                        now,
                        sign,
                    )
                })
                .await
            }
            Kind::Postgres(pg) => {
                let outcome = pg
                    .renew(
                        &agent_id,
                        cert_serial.as_deref(),
                        identity_expires_at,
                        now,
                        sign,
                    )
                    .await?;
                Ok((outcome, self.shared_revoked(pg, now).await?))
            }
        }
    }

    /// One agent, with its state at `now`.
    pub async fn get(
        &self,
        agent_id: String,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => {
                Self::on_sqlite(reg, move |reg| reg.get(&agent_id, now, lost_after)).await
            }
            Kind::Postgres(pg) => pg.get(&agent_id, now, lost_after).await,
        }
    }

    /// Every agent, by hostname, with its state at `now`.
    pub async fn list(
        &self,
        now: i64,
        lost_after: Duration,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => Self::on_sqlite(reg, move |reg| reg.list(now, lost_after)).await,
            Kind::Postgres(pg) => pg.list(now, lost_after).await,
        }
    }

    /// Revokes an agent and every certificate it holds; `None` when unknown.
    pub async fn revoke(
        &self,
        agent_id: String,
        now: i64,
        lost_after: Duration,
    ) -> Result<Option<AgentRecord>, StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => {
                Self::on_sqlite(reg, move |reg| reg.revoke(&agent_id, now, lost_after)).await
            }
            Kind::Postgres(pg) => pg.revoke(&agent_id, now, lost_after).await,
        }
    }

    /// The CRL's entries: revoked certificates not yet expired.
    pub async fn revoked_certs(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => Self::on_sqlite(reg, move |reg| reg.revoked_certs(now)).await,
            Kind::Postgres(pg) => pg.revoked_certs(now).await,
        }
    }

    /// Records a token minted for a person or a service.
    pub async fn record_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => Self::on_sqlite(reg, move |reg| reg.record_token(&token)).await,
            Kind::Postgres(pg) => pg.record_token(&token).await,
        }
    }

    /// The recorded tokens, newest first: those not expired at `now`, or all.
    pub async fn tokens(&self, now: i64, all: bool) -> Result<Vec<TokenRecord>, StoreError> {
        match &self.kind {
            Kind::Sqlite(reg) => Self::on_sqlite(reg, move |reg| reg.tokens(now, all)).await,
            Kind::Postgres(pg) => pg.tokens(now, all).await,
        }
    }

    /// Revokes a recorded token by id or unique prefix (see
    /// [`Registry::revoke_token`]).
    pub async fn revoke_token(
        &self,
        id: String,
        now: i64,
    ) -> Result<Result<TokenRecord, Vec<String>>, StoreError> {
        let outcome = match &self.kind {
            Kind::Sqlite(reg) => Self::on_sqlite(reg, move |reg| reg.revoke_token(&id, now)).await,
            Kind::Postgres(pg) => pg.revoke_token(&id, now).await,
        };
        // This process's own revocation counts at once.
        *lock(&self.revoked) = None;
        outcome
    }

    /// Whether the registry answers, and its schema version (asked at most
    /// once a second, whoever calls `/healthz`).
    pub async fn health(&self) -> RegistryHealth {
        if let Some((at, health)) = lock(&self.health).as_ref()
            && at.elapsed() < HEALTH_CACHE
        {
            return health.clone();
        }
        let version = match &self.kind {
            Kind::Sqlite(reg) => Self::on_sqlite(reg, Registry::schema_version).await,
            Kind::Postgres(pg) => pg.schema_version().await,
        };
        let health = RegistryHealth {
            backend: self.name().to_owned(),
            state: if version.is_ok() { "ok" } else { "unavailable" }.to_owned(),
            schema_version: version
                .inspect_err(|e| tracing::warn!(error = %e, "the registry does not answer"))
                .ok(),
        };
        *lock(&self.health) = Some((Instant::now(), health.clone()));
        health
    }
}
