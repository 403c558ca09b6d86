//! The supervisor: takes the steps the [`Lifecycle`] asks for (enroll,
//! heartbeat, renew), feeds the outcomes back, keeps the credentials on
//! disk and in the TLS server, and publishes the state for the stats API.
//!
//! It talks to the control plane only once it knows the control plane's
//! pin (from the config, else from the join token), so a join token is
//! never sent to anything else; and from its first certificate on, it
//! shows that certificate on every call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{CallError, Controller};
use super::collect::now_ms;
use super::lifecycle::{Failure, Held, JOIN_POLL_MS, Lifecycle, Outcome, Step};
use super::store::{Saved, SavedState, Store};
use super::trust::StatsTrust;
use crate::model::control::{HeartbeatRequest, RegisterRequest, RenewRequest, TrustUpdate};
use crate::pki::tls::{ClientIdentity, ReloadableCert};
use crate::pki::{self, ControlPin};

/// What the stats API reads: the registration as of the last change, and
/// what checks stats tokens (none before the first registration).
#[derive(Debug, Clone)]
pub struct Published {
    pub life: Lifecycle,
    pub trust: Option<Arc<StatsTrust>>,
}

/// Where the control plane is and how the agent knows it.
#[derive(Debug, Clone)]
pub struct ControlTarget {
    /// Every replica's URL (at least one), in the config's order.
    pub urls: Vec<String>,
    /// Which of them answered last: tried first.
    pub preferred: Arc<std::sync::atomic::AtomicUsize>,
    /// The fleet CA (its certificate chains to it).
    pub ca_pem: String,
    /// The pin the config names; the join token's is used when absent.
    pub pin: Option<ControlPin>,
}

impl ControlTarget {
    /// A client for the control plane (any replica), pinned, showing `identity`.
    fn controller(
        &self,
        pin: ControlPin,
        identity: Option<&ClientIdentity>,
    ) -> Result<Controller, pki::PkiError> {
        Controller::new(
            &self.urls,
            Arc::clone(&self.preferred),
            &self.ca_pem,
            pin,
            identity,
        )
    }

    /// The first URL: what the agent shows until one has answered.
    fn first_url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }
}

/// Who this agent says it is when it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    pub addresses: Vec<String>,
    pub stats_port: u16,
}

/// The agent's credentials in memory (never logged).
struct Creds {
    identity_token: String,
    state: SavedState,
    /// The control plane, pinned, called with the agent's certificate.
    controller: Controller,
}

pub struct Supervisor {
    target: ControlTarget,
    store: Store,
    join_token_file: std::path::PathBuf,
    who: Identity,
    life: Lifecycle,
    creds: Option<Creds>,
    trust: Option<Arc<StatsTrust>>,
    published: watch::Sender<Arc<Published>>,
    cert: watch::Sender<Option<Arc<ReloadableCert>>>,
    /// A join token the control plane refused for good; not sent again.
    refused_join: Option<String>,
    waiting_said: bool,
    started: std::time::Instant,
}

/// The receiving ends the rest of the agent watches.
pub struct Watches {
    pub published: watch::Receiver<Arc<Published>>,
    /// `None` until the agent has a certificate to serve with.
    pub cert: watch::Receiver<Option<Arc<ReloadableCert>>>,
}

impl Supervisor {
    /// Resumes from `saved` when there is a usable saved registration.
    pub fn new(
        target: ControlTarget,
        store: Store,
        join_token_file: std::path::PathBuf,
        who: Identity,
        saved: Option<Saved>,
    ) -> (Self, Watches) {
        let mut life = Lifecycle::new(target.first_url());
        let mut creds = None;
        let mut trust = None;
        let mut cert = None;
        if let Some(saved) = saved {
            match resume(&target, &saved) {
                Ok((c, controller)) => {
                    tracing::info!(agent_id = %saved.state.agent_id, "resuming the saved registration");
                    life = Lifecycle::resumed(target.first_url(), saved.state.resumed());
                    cert = Some(c);
                    // Until the first heartbeat, the keys it saved.
                    trust = StatsTrust::from_update(&saved.state.trust, &saved.state.agent_id)
                        .ok()
                        .map(Arc::new);
                    creds = Some(Creds {
                        identity_token: saved.identity_token,
                        state: saved.state,
                        controller,
                    });
                }
                Err(e) => {
                    tracing::warn!("cannot resume the saved registration, enrolling again: {e}");
                }
            }
        }
        let (published, published_rx) = watch::channel(Arc::new(Published {
            life: life.clone(),
            trust: trust.clone(),
        }));
        let (cert, cert_rx) = watch::channel(cert);
        let sup = Self {
            target,
            store,
            join_token_file,
            who,
            life,
            creds,
            trust,
            published,
            cert,
            refused_join: None,
            waiting_said: false,
            started: std::time::Instant::now(),
        };
        (
            sup,
            Watches {
                published: published_rx,
                cert: cert_rx,
            },
        )
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let now = now_ms();
            let (step, at) = self.life.next(now);
            if at > now {
                let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            tokio::select! {
                () = self.take(step) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn take(&mut self, step: Step) {
        match step {
            Step::Enroll => {
                if !self.enroll().await {
                    // No usable join token yet: look again shortly.
                    tokio::time::sleep(Duration::from_millis(JOIN_POLL_MS.unsigned_abs())).await;
                    return;
                }
            }
            Step::Renew { certificate } => self.renew(certificate).await,
            Step::Heartbeat => self.heartbeat().await,
        }
        // Shown as the agent's control plane: the replica that answered last.
        if let Some(creds) = &self.creds {
            creds
                .controller
                .current()
                .clone_into(&mut self.life.controller);
        }
        self.publish();
    }

    fn apply(&mut self, outcome: Outcome) {
        self.life.apply(now_ms(), outcome, rand::random());
    }

    fn fail(&mut self, failure: Failure, error: String) {
        tracing::warn!(state = %self.life.registration_state(now_ms()), "{error}");
        self.apply(Outcome::Failed { failure, error });
    }

    fn publish(&self) {
        self.published.send_replace(Arc::new(Published {
            life: self.life.clone(),
            trust: self.trust.clone(),
        }));
    }

    /// Takes in what the control plane says checks stats tokens; saved, so
    /// a restart starts from it. A key set that does not parse is refused
    /// (the old one stays).
    fn learn(&mut self, update: &TrustUpdate) {
        let Some(creds) = &mut self.creds else { return };
        if creds.state.trust == *update && self.trust.is_some() {
            return;
        }
        match StatsTrust::from_update(update, &creds.state.agent_id) {
            Ok(trust) => {
                let kids: Vec<&str> = trust.kids();
                tracing::debug!(
                    ?kids,
                    revoked = trust.revoked_count(),
                    "token keys and revocations updated"
                );
                self.trust = Some(Arc::new(trust));
                creds.state.trust = update.clone();
                if let Err(e) = self.store.save_state(&creds.state) {
                    tracing::error!("{e}");
                }
            }
            Err(e) => tracing::warn!(
                "the control plane sent unusable token keys, keeping the old ones: {e}"
            ),
        }
    }

    /// Registers with the join token, if there is a new one. Returns false
    /// when there was nothing to try.
    async fn enroll(&mut self) -> bool {
        let token = match read_join_token(&self.join_token_file) {
            Ok(Some(token)) if self.refused_join.as_ref() != Some(&token) => token,
            Ok(_) => {
                if !self.waiting_said {
                    tracing::info!(
                        file = %self.join_token_file.display(),
                        "waiting for a join token (run `fleetctl token join HOST` on the console and put it there, mode 0600)"
                    );
                    self.waiting_said = true;
                }
                return false;
            }
            Err(e) => {
                self.fail(Failure::NoUsableJoinToken, e);
                return true;
            }
        };
        self.waiting_said = false;
        let Some(pin) = self.target.pin.or_else(|| join_token_pin(&token)) else {
            self.refused_join = Some(token);
            self.fail(
                Failure::NoUsableJoinToken,
                "the join token carries no control plane pin and the config names none \
                 (control_pin): mint the token with `fleetctl token join`, which adds it"
                    .into(),
            );
            return true;
        };
        let controller = match self.target.controller(pin, None) {
            Ok(c) => c,
            Err(e) => {
                self.fail(Failure::Transient, format!("cannot set up TLS: {e}"));
                return true;
            }
        };
        let mut sans = vec![self.who.hostname.clone()];
        sans.extend(self.who.addresses.iter().cloned());
        let key = match pki::new_key_and_csr(&self.who.hostname, &sans) {
            Ok(key) => key,
            Err(e) => {
                self.fail(Failure::Transient, format!("cannot make a key: {e}"));
                return true;
            }
        };
        let req = RegisterRequest {
            join_token: token.clone(),
            csr_pem: key.csr_pem.clone(),
            hostname: self.who.hostname.clone(),
            addresses: self.who.addresses.clone(),
            stats_port: self.who.stats_port,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let resp = match controller.register(&req).await {
            Ok(resp) => resp,
            Err(e) => {
                self.join_refused(&token, &e);
                return true;
            }
        };
        self.remove_join_token();
        self.take_registration(resp, key, pin);
        true
    }

    /// Takes in a registration: certificate into the TLS server, the
    /// control plane's client showing it, credentials to disk.
    fn take_registration(
        &mut self,
        resp: crate::model::control::RegisterResponse,
        key: pki::KeyAndCsr,
        pin: ControlPin,
    ) {
        let trust = match StatsTrust::from_update(&resp.trust, &resp.agent_id) {
            Ok(v) => v,
            Err(e) => {
                self.fail(
                    Failure::Transient,
                    format!("the control plane sent unusable token keys: {e}"),
                );
                return;
            }
        };
        let identity = ClientIdentity {
            cert_pem: resp.certificate_pem.clone(),
            key_pem: key.key_pem.clone(),
        };
        let controller = match self.target.controller(pin, Some(&identity)) {
            Ok(c) => c,
            Err(e) => {
                self.fail(
                    Failure::Transient,
                    format!("cannot use the new certificate: {e}"),
                );
                return;
            }
        };
        let now = now_ms();
        let state = SavedState {
            agent_id: resp.agent_id.clone(),
            registered_at: now / 1000,
            controller: self.life.controller.clone(),
            control_pin: Some(pin.to_string()),
            trust: resp.trust.clone(),
            heartbeat_interval_secs: resp.heartbeat_interval_secs,
            identity_obtained_at_ms: now,
            identity_expires_at_ms: resp.identity_expires_at.saturating_mul(1000),
            cert_obtained_at_ms: now,
            cert_expires_at_ms: resp.certificate_expires_at.saturating_mul(1000),
        };
        let saved = Saved {
            state,
            key_pem: key.key_pem,
            cert_pem: resp.certificate_pem,
            identity_token: resp.identity_token,
        };
        if let Err(e) = self.install_cert(&saved.cert_pem, &saved.key_pem) {
            self.fail(Failure::Transient, e);
            return;
        }
        if let Err(e) = self.store.save(&saved, &resp.ca_pem) {
            tracing::error!("{e}");
        }
        tracing::info!(agent_id = %saved.state.agent_id, "registered with the control plane");
        let outcome = Outcome::Enrolled {
            agent_id: saved.state.agent_id.clone(),
            registered_at: now,
            identity: held(now, saved.state.identity_expires_at_ms),
            cert: held(now, saved.state.cert_expires_at_ms),
            heartbeat_interval_ms: secs_to_ms(saved.state.heartbeat_interval_secs),
        };
        self.creds = Some(Creds {
            identity_token: saved.identity_token,
            state: saved.state,
            controller,
        });
        self.trust = Some(Arc::new(trust));
        self.apply(outcome);
    }

    fn join_refused(&mut self, token: &str, e: &CallError) {
        match e.code() {
            // It can never work again: remove it, so nobody wonders.
            Some("token_replayed" | "token_expired") => self.remove_join_token(),
            Some(_) => self.refused_join = Some(token.to_owned()),
            None => return self.fail(Failure::Transient, format!("registering: {e}")),
        }
        self.fail(
            Failure::NoUsableJoinToken,
            format!("registering: {e}; give the agent a new join token"),
        );
    }

    fn remove_join_token(&self) {
        match std::fs::remove_file(&self.join_token_file) {
            Ok(()) => tracing::debug!(file = %self.join_token_file.display(), "join token removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                file = %self.join_token_file.display(),
                "cannot remove the used join token: {e}"
            ),
        }
    }

    async fn renew(&mut self, certificate: bool) {
        let Some(creds) = &self.creds else { return };
        let key = if certificate {
            let mut sans = vec![self.who.hostname.clone()];
            sans.extend(self.who.addresses.iter().cloned());
            match pki::new_key_and_csr(&self.who.hostname, &sans) {
                Ok(key) => Some(key),
                Err(e) => return self.fail(Failure::Transient, format!("cannot make a key: {e}")),
            }
        } else {
            None
        };
        let req = RenewRequest {
            csr_pem: key.as_ref().map(|k| k.csr_pem.clone()),
        };
        let resp = match creds.controller.renew(&creds.identity_token, &req).await {
            Ok(resp) => resp,
            Err(e) => return self.call_failed("renewing", &e),
        };
        let now = now_ms();
        let mut state = creds.state.clone();
        let mut controller = creds.controller.clone();
        state.identity_obtained_at_ms = now;
        state.identity_expires_at_ms = resp.identity_expires_at.saturating_mul(1000);
        let mut new_cert = None;
        if let (Some(key), Some(pem), Some(expires)) =
            (&key, &resp.certificate_pem, resp.certificate_expires_at)
        {
            if let Err(e) = self.install_cert(pem, &key.key_pem) {
                return self.fail(Failure::Transient, e);
            }
            // From now on, the new certificate is the one shown.
            let identity = ClientIdentity {
                cert_pem: pem.clone(),
                key_pem: key.key_pem.clone(),
            };
            match state
                .control_pin
                .as_deref()
                .and_then(|p| p.parse::<ControlPin>().ok())
                .map(|pin| self.target.controller(pin, Some(&identity)))
            {
                Some(Ok(c)) => controller = c,
                Some(Err(e)) => tracing::warn!("cannot show the new certificate yet: {e}"),
                None => tracing::warn!("no control plane pin saved; showing the old certificate"),
            }
            state.cert_obtained_at_ms = now;
            state.cert_expires_at_ms = expires.saturating_mul(1000);
            new_cert = Some(held(now, state.cert_expires_at_ms));
        }
        let pair = key
            .as_ref()
            .zip(resp.certificate_pem.as_deref())
            .map(|(k, c)| (k.key_pem.as_str(), c));
        if let Err(e) = self.store.save_renewal(
            &state,
            &resp.identity_token,
            pair.filter(|_| new_cert.is_some()),
        ) {
            tracing::error!("{e}");
        }
        tracing::info!(certificate = new_cert.is_some(), "identity renewed");
        let identity = held(now, state.identity_expires_at_ms);
        self.creds = Some(Creds {
            identity_token: resp.identity_token,
            state,
            controller,
        });
        self.learn(&resp.trust);
        self.apply(Outcome::Renewed {
            identity,
            cert: new_cert,
        });
        if certificate && new_cert.is_none() {
            // Otherwise the next step would ask again at once, forever.
            self.fail(
                Failure::Transient,
                "the control plane renewed the identity but not the certificate".into(),
            );
        }
    }

    async fn heartbeat(&mut self) {
        let Some(creds) = &self.creds else { return };
        let req = HeartbeatRequest {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            agent_uptime_secs: self.started.elapsed().as_secs(),
        };
        match creds
            .controller
            .heartbeat(&creds.identity_token, &req)
            .await
        {
            Ok(resp) => {
                tracing::debug!(state = %resp.state, "heartbeat accepted");
                self.learn(&resp.trust);
                self.apply(Outcome::HeartbeatAccepted {
                    state: resp.state,
                    interval_ms: secs_to_ms(resp.heartbeat_interval_secs),
                });
            }
            Err(e) => self.call_failed("heartbeat", &e),
        }
    }

    fn call_failed(&mut self, what: &str, e: &CallError) {
        let failure = match e {
            CallError::Refused { body, .. } if body.error == "revoked" => Failure::Revoked,
            CallError::Refused { status: 401, .. } => Failure::IdentityRefused,
            CallError::Refused { body, .. } if body.error == "unknown_agent" => {
                Failure::IdentityRefused
            }
            _ => Failure::Transient,
        };
        self.fail(failure, format!("{what}: {e}"));
    }

    fn install_cert(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let unusable = |e: pki::PkiError| format!("cannot use the new certificate: {e}");
        let current = self.cert.borrow().clone();
        if let Some(reloadable) = current {
            return reloadable.replace(cert_pem, key_pem).map_err(unusable);
        }
        let reloadable = ReloadableCert::new(cert_pem, key_pem).map_err(unusable)?;
        self.cert.send_replace(Some(reloadable));
        Ok(())
    }
}

/// Rebuilds a saved registration: its certificate for the TLS server, and
/// a client for the control plane showing it, pinned as when it enrolled.
fn resume(
    target: &ControlTarget,
    saved: &Saved,
) -> Result<(Arc<ReloadableCert>, Controller), String> {
    let cert = ReloadableCert::new(&saved.cert_pem, &saved.key_pem)
        .map_err(|e| format!("saved certificate unusable: {e}"))?;
    let pin = match saved.state.control_pin.as_deref() {
        Some(text) => text
            .parse::<ControlPin>()
            .map_err(|e| format!("saved control plane pin unusable: {e}"))?,
        None => target
            .pin
            .ok_or("it names no control plane pin, and neither does the config")?,
    };
    if target.pin.is_some_and(|p| p != pin) {
        return Err("the config pins another control plane than the one it registered with".into());
    }
    let identity = ClientIdentity {
        cert_pem: saved.cert_pem.clone(),
        key_pem: saved.key_pem.clone(),
    };
    let controller = target
        .controller(pin, Some(&identity))
        .map_err(|e| e.to_string())?;
    Ok((cert, controller))
}

/// The control plane pin a join token carries, if any.
fn join_token_pin(token: &str) -> Option<ControlPin> {
    crate::auth::unverified_join_claims(token)?
        .control_pin?
        .parse()
        .ok()
}

/// The join token in `path`: `None` when there is no file (yet).
fn read_join_token(path: &std::path::Path) -> Result<Option<String>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    file = %path.display(),
                    "the join token file is readable by others; it should be mode 0600"
                );
            }
            let token = text.trim();
            Ok((!token.is_empty()).then(|| token.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read the join token file {}: {e}",
            path.display()
        )),
    }
}

fn held(obtained_at: i64, expires_at: i64) -> Held {
    Held {
        obtained_at,
        expires_at,
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}
