//! The agents' side of the API: register (with a join token), renew and
//! heartbeat (with an identity token and the agent's own certificate).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;

use super::{MAX_ADDRESSES, Reply, body, check_name, done, refused, store_failure};
use crate::auth::{Audience, same_name};
use crate::control::ControlPlane;
use crate::control::extract::{AgentAuth, ApiFailure};
use crate::model::RegistrationState;
use crate::model::control::{
    HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, RenewRequest,
    RenewResponse,
};
use crate::model::time::now_unix;
use crate::pki::FleetCa;
use crate::store::registry::{CertRow, NewAgent, Registration, RenewOutcome};

/// What a join token vouches for, less the control plane's own names:
/// what the agent's certificate will name, in the issuer's order.
fn vouched_names(plane: &ControlPlane, claims: &crate::auth::Claims) -> Vec<String> {
    let mut vouched = claims.names.clone();
    if vouched.is_empty() {
        vouched.extend(claims.host.clone());
    }
    vouched.retain(|name| {
        let own = plane.is_own_name(name);
        if own {
            tracing::warn!(
                name,
                "a join token vouches for a name of the control plane itself; left out"
            );
        }
        !own && check_name(name, "name").is_ok()
    });
    vouched.truncate(MAX_ADDRESSES);
    vouched
}

fn signing_failed(e: &crate::pki::PkiError) -> ApiFailure {
    ApiFailure::new(StatusCode::BAD_REQUEST, "bad_csr", e.to_string())
}

/// Whether a registration may go ahead, before anything is used up: the
/// request is well formed and names the host the join token is bound to,
/// and the token vouches for something an agent may have. Returns what the
/// certificate will name.
fn admit(
    plane: &ControlPlane,
    request: &RegisterRequest,
    claims: &crate::auth::Claims,
) -> Result<Vec<String>, ApiFailure> {
    check_name(&request.hostname, "hostname")?;
    if request.addresses.len() > MAX_ADDRESSES {
        return Err(ApiFailure::bad_request(format!(
            "at most {MAX_ADDRESSES} addresses"
        )));
    }
    for addr in &request.addresses {
        check_name(addr, "address")?;
    }
    if request.stats_port == 0 {
        return Err(ApiFailure::bad_request("stats_port must not be 0"));
    }
    crate::model::text::check_agent_version(&request.agent_version)
        .map_err(ApiFailure::bad_request)?;
    let bound = claims.host.clone().unwrap_or_default();
    if !std::iter::once(&request.hostname)
        .chain(&request.addresses)
        .any(|name| same_name(name, &bound))
    {
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "wrong_host",
            format!(
                "this join token is for {bound:?}, not for {:?} or its addresses",
                request.hostname
            ),
        ));
    }
    let vouched = vouched_names(plane, claims);
    if vouched.is_empty() {
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "nothing_vouched",
            "this join token vouches for no name or address an agent may have; mint one for the host's own name or address",
        ));
    }
    let unvouched: Vec<&String> = std::iter::once(&request.hostname)
        .chain(&request.addresses)
        .filter(|n| !vouched.iter().any(|v| same_name(v, n)))
        .collect();
    if !unvouched.is_empty() {
        tracing::info!(
            ?unvouched,
            "the agent asked for names its join token does not vouch for; its certificate leaves them out"
        );
    }
    // Checked before the token is used up, signed only after.
    FleetCa::check_csr(&request.csr_pem).map_err(|e| signing_failed(&e))?;
    Ok(vouched)
}

pub(super) async fn register(
    State(plane): State<Arc<ControlPlane>>,
    request: Result<Json<RegisterRequest>, JsonRejection>,
) -> Reply<RegisterResponse> {
    let request = body(request)?;
    let claims = plane
        .verifier()
        .verify(&request.join_token, Audience::Join)
        .map_err(ApiFailure::token)?;
    let vouched = admit(&plane, &request, &claims)?;
    let bound = claims.host.clone().unwrap_or_default();

    let agent_id = format!("ag-{:016x}", rand::random::<u64>());
    let settings = plane.settings.clone();
    let (identity_token, identity) = plane
        .issuer()
        .issue(Audience::Agent, &agent_id, settings.identity_ttl)
        .map_err(|e| ApiFailure::internal(&e))?;
    let new = NewAgent {
        agent_id: agent_id.clone(),
        bound_host: bound,
        hostname: request.hostname.clone(),
        addresses: vouched.clone(),
        stats_port: request.stats_port,
        agent_version: request.agent_version.clone(),
        identity_expires_at: identity.exp,
    };
    let csr = request.csr_pem.clone();
    let signer = Arc::clone(&plane);
    let (outcome, revoked) = plane
        .registry
        .register(new, claims.jti.clone(), claims.exp, now_unix(), move || {
            let cert = signer.ca.sign_csr(&csr, &vouched, settings.cert_ttl)?;
            let row = CertRow {
                serial: cert.serial.clone(),
                not_after: cert.not_after,
            };
            Ok::<_, crate::pki::PkiError>((row, cert))
        })
        .await
        .map_err(|e| store_failure(&e))?;
    let trust = plane.trust_update(&revoked);
    match outcome {
        Err(e) => Err(signing_failed(&e)),
        Ok(Registration::Replayed) => Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "token_replayed",
            "this join token was already used; ask for a new one",
        )),
        Ok(Registration::Stored { replaced, signed }) => {
            tracing::info!(
                agent = agent_id,
                hostname = request.hostname,
                replaced = replaced.as_deref().unwrap_or("-"),
                "agent registered"
            );
            Ok(done(
                Some(&agent_id),
                RegisterResponse {
                    agent_id: agent_id.clone(),
                    certificate_pem: signed.pem,
                    certificate_expires_at: signed.not_after,
                    ca_pem: plane.ca_pem().to_owned(),
                    identity_token,
                    identity_expires_at: identity.exp,
                    heartbeat_interval_secs: plane.settings.heartbeat_interval.as_secs(),
                    trust,
                },
            ))
        }
    }
}

pub(super) async fn renew(
    State(plane): State<Arc<ControlPlane>>,
    auth: AgentAuth,
    request: Result<Json<RenewRequest>, JsonRejection>,
) -> Reply<RenewResponse> {
    let request = body(request)?;
    let agent_id = auth.claims.sub;
    if let Some(csr) = &request.csr_pem {
        FleetCa::check_csr(csr).map_err(|e| signing_failed(&e).for_agent(&agent_id))?;
    }
    let settings = plane.settings.clone();
    let (identity_token, identity) = plane
        .issuer()
        .issue(Audience::Agent, &agent_id, settings.identity_ttl)
        .map_err(|e| ApiFailure::internal(&e))?;
    let signer = Arc::clone(&plane);
    let csr = request.csr_pem;
    let (outcome, revoked) = plane
        .registry
        .renew(
            agent_id.clone(),
            auth.cert_serial,
            identity.exp,
            now_unix(),
            // The names come from the registry (what the join token vouched
            // for), never from the CSR.
            move |names: &[String]| match &csr {
                Some(csr) => {
                    let cert = signer.ca.sign_csr(csr, names, settings.cert_ttl)?;
                    let row = CertRow {
                        serial: cert.serial.clone(),
                        not_after: cert.not_after,
                    };
                    Ok(Some((row, cert)))
                }
                None => Ok(None),
            },
        )
        .await
        .map_err(|e| store_failure(&e))?;
    let cert = match outcome {
        RenewOutcome::Renewed { signed } => signed,
        RenewOutcome::Refused(refusal) => return Err(refused(refusal, &agent_id)),
        RenewOutcome::SignFailed(e) => return Err(signing_failed(&e).for_agent(&agent_id)),
    };
    let trust = plane.trust_update(&revoked);
    Ok(done(
        Some(&agent_id),
        RenewResponse {
            identity_token,
            identity_expires_at: identity.exp,
            certificate_expires_at: cert.as_ref().map(|c| c.not_after),
            certificate_pem: cert.map(|c| c.pem),
            trust,
        },
    ))
}

pub(super) async fn heartbeat(
    State(plane): State<Arc<ControlPlane>>,
    auth: AgentAuth,
    request: Result<Json<HeartbeatRequest>, JsonRejection>,
) -> Reply<HeartbeatResponse> {
    let request = body(request)?;
    crate::model::text::check_agent_version(&request.agent_version)
        .map_err(ApiFailure::bad_request)?;
    let agent_id = auth.claims.sub;
    let revoked = plane
        .registry
        .heartbeat(
            agent_id.clone(),
            auth.cert_serial,
            request.agent_version,
            now_unix(),
        )
        .await
        .map_err(|e| store_failure(&e))?
        .map_err(|r| refused(r, &agent_id))?;
    let trust = plane.trust_update(&revoked);
    Ok(done(
        Some(&agent_id),
        HeartbeatResponse {
            state: RegistrationState::Registered,
            heartbeat_interval_secs: plane.settings.heartbeat_interval.as_secs(),
            trust,
        },
    ))
}
