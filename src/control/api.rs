//! The HTTPS API's routes and handlers (the table is in
//! [`crate::model::control`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::extract::{AgentAuth, ApiFailure, LogNote, OperatorAuth};
use super::{ControlPlane, unix_now};
use crate::auth::Audience;
use crate::model::RegistrationState;
use crate::model::control::{
    AgentRecord, HeartbeatRequest, HeartbeatResponse, JoinTokenRequest, JoinTokenResponse,
    RegisterRequest, RegisterResponse, RenewRequest, RenewResponse, SdTargetGroup,
};
use crate::store::registry::{NewAgent, Refusal, Registration};

/// The longest join token the API hands out.
const MAX_JOIN_TTL: Duration = Duration::from_hours(24);
/// Most addresses an agent may register with.
const MAX_ADDRESSES: usize = 32;

/// A JSON body with a note for the request log.
type Done<T> = (Extension<LogNote>, Json<T>);
type Reply<T> = Result<Done<T>, ApiFailure>;

fn done<T>(agent: Option<&str>, body: T) -> Done<T> {
    let note = LogNote {
        agent: agent.map(str::to_owned),
        code: None,
    };
    (Extension(note), Json(body))
}

pub(super) fn router(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/v1/join-tokens", post(join_token))
        .route("/v1/register", post(register))
        .route("/v1/renew", post(renew))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}/revoke", post(revoke))
        .route("/v1/sd", get(service_discovery))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(axum::middleware::from_fn(log_request))
        .with_state(plane)
}

/// One log line per request: method, route (never the raw path, which a
/// confused client could fill with a token), status, agent, reason code.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let note = response
        .extensions()
        .get::<LogNote>()
        .cloned()
        .unwrap_or_default();
    let status = response.status().as_u16();
    let agent = note.agent.as_deref().unwrap_or("-");
    let code = note.code.unwrap_or("-");
    let micros = started.elapsed().as_micros();
    if status >= 500 {
        tracing::error!(%method, route, status, agent, code, micros, "request");
    } else if status >= 400 {
        tracing::info!(%method, route, status, agent, code, micros, "request refused");
    } else {
        tracing::debug!(%method, route, status, agent, micros, "request");
    }
    response
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiFailure> {
    body.map(|Json(b)| b).map_err(|e| {
        ApiFailure::bad_request(format!("the request body is not valid: {}", e.body_text()))
    })
}

fn store_failure(e: &crate::store::StoreError) -> ApiFailure {
    ApiFailure::internal(e)
}

fn refused(refusal: Refusal, agent: &str) -> ApiFailure {
    match refusal {
        Refusal::Unknown => ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "unknown_agent",
            "the control plane has no such agent (it registered again, or was never registered); enroll with a new join token",
        ),
        Refusal::Revoked => ApiFailure::new(
            StatusCode::FORBIDDEN,
            "revoked",
            "this agent was revoked by an operator; it needs a new join token",
        ),
    }
    .for_agent(agent)
}

async fn join_token(
    State(plane): State<Arc<ControlPlane>>,
    OperatorAuth(operator): OperatorAuth,
    request: Result<Json<JoinTokenRequest>, JsonRejection>,
) -> Reply<JoinTokenResponse> {
    let request = body(request)?;
    check_name(&request.host, "host")?;
    let ttl = request.ttl_secs.map(Duration::from_secs);
    if ttl.is_some_and(|t| t > MAX_JOIN_TTL || t.is_zero()) {
        return Err(ApiFailure::bad_request(format!(
            "ttl_secs must be between 1 and {}",
            MAX_JOIN_TTL.as_secs()
        )));
    }
    let (token, claims) = plane
        .join_token(&request.host, ttl)
        .map_err(|e| ApiFailure::internal(&e))?;
    tracing::info!(
        host = request.host,
        operator = operator.sub,
        expires_at = claims.exp,
        "join token issued"
    );
    Ok(done(
        None,
        JoinTokenResponse {
            token,
            expires_at: claims.exp,
        },
    ))
}

/// A name or address that can go in a certificate.
fn check_name(name: &str, what: &str) -> Result<(), ApiFailure> {
    if name.parse::<IpAddr>().is_ok() || rustls_pki_types::DnsName::try_from(name).is_ok() {
        Ok(())
    } else {
        Err(ApiFailure::bad_request(format!(
            "{what} {name:?} is neither a host name nor an IP address"
        )))
    }
}

fn same_host(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

async fn register(
    State(plane): State<Arc<ControlPlane>>,
    request: Result<Json<RegisterRequest>, JsonRejection>,
) -> Reply<RegisterResponse> {
    let request = body(request)?;
    let claims = plane
        .verifier
        .verify(&request.join_token, Audience::Join)
        .map_err(ApiFailure::token)?;
    check_name(&request.hostname, "hostname")?;
    crate::model::text::check_agent_version(&request.agent_version)
        .map_err(ApiFailure::bad_request)?;
    if request.addresses.len() > MAX_ADDRESSES {
        return Err(ApiFailure::bad_request(format!(
            "at most {MAX_ADDRESSES} addresses"
        )));
    }
    for addr in &request.addresses {
        check_name(addr, "address")?;
    }
    if request.stats_port == 0
        || request.agent_version.is_empty()
        || request.agent_version.len() > 64
    {
        return Err(ApiFailure::bad_request(
            "stats_port must not be 0 and agent_version must be 1 to 64 characters",
        ));
    }
    let bound = claims.host.as_deref().unwrap_or_default();
    if !std::iter::once(&request.hostname)
        .chain(&request.addresses)
        .any(|name| same_host(name, bound))
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

    let agent_id = format!("ag-{:016x}", rand::random::<u64>());
    let mut sans = vec![request.hostname.clone()];
    sans.extend(request.addresses.iter().cloned());
    let settings = &plane.settings;
    let cert = plane
        .ca
        .sign_csr(&request.csr_pem, &sans, settings.cert_ttl)
        .map_err(|e| ApiFailure::new(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()))?;
    let (identity_token, identity) = plane
        .issuer
        .issue(Audience::Agent, &agent_id, None, settings.identity_ttl)
        .map_err(|e| ApiFailure::internal(&e))?;
    let new = NewAgent {
        agent_id: agent_id.clone(),
        bound_host: bound.to_owned(),
        hostname: request.hostname.clone(),
        addresses: request.addresses.clone(),
        stats_port: request.stats_port,
        agent_version: request.agent_version.clone(),
        identity_expires_at: identity.exp,
        certificate_expires_at: cert.not_after,
    };
    let (jti, jti_exp) = (claims.jti.clone(), claims.exp);
    let outcome = plane
        .db(move |reg| reg.register(&new, &jti, jti_exp, unix_now()))
        .await
        .map_err(|e| store_failure(&e))?;
    match outcome {
        Registration::Replayed => Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "token_replayed",
            "this join token was already used; ask for a new one",
        )),
        Registration::Stored { replaced } => {
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
                    certificate_pem: cert.pem,
                    certificate_expires_at: cert.not_after,
                    ca_pem: plane.ca_pem().to_owned(),
                    identity_token,
                    identity_expires_at: identity.exp,
                    token_public_key_pem: plane.token_public_key_pem().to_owned(),
                    heartbeat_interval_secs: settings.heartbeat_interval.as_secs(),
                },
            ))
        }
    }
}

async fn renew(
    State(plane): State<Arc<ControlPlane>>,
    AgentAuth(claims): AgentAuth,
    request: Result<Json<RenewRequest>, JsonRejection>,
) -> Reply<RenewResponse> {
    let request = body(request)?;
    let agent_id = claims.sub;
    let lost_after = plane.settings.lost_after;
    let id = agent_id.clone();
    let record = plane
        .db(move |reg| reg.get(&id, unix_now(), lost_after))
        .await
        .map_err(|e| store_failure(&e))?;
    let record = match record {
        None => return Err(refused(Refusal::Unknown, &agent_id)),
        Some(r) if r.state == RegistrationState::Revoked => {
            return Err(refused(Refusal::Revoked, &agent_id));
        }
        Some(r) => r,
    };
    let settings = &plane.settings;
    let cert = match &request.csr_pem {
        Some(csr) => {
            let mut sans = vec![record.hostname.clone()];
            sans.extend(record.addresses.iter().cloned());
            Some(
                plane
                    .ca
                    .sign_csr(csr, &sans, settings.cert_ttl)
                    .map_err(|e| {
                        ApiFailure::new(StatusCode::BAD_REQUEST, "bad_csr", e.to_string())
                            .for_agent(&agent_id)
                    })?,
            )
        }
        None => None,
    };
    let (identity_token, identity) = plane
        .issuer
        .issue(Audience::Agent, &agent_id, None, settings.identity_ttl)
        .map_err(|e| ApiFailure::internal(&e))?;
    let (id, cert_exp) = (agent_id.clone(), cert.as_ref().map(|c| c.not_after));
    plane
        .db(move |reg| reg.renew(&id, identity.exp, cert_exp))
        .await
        .map_err(|e| store_failure(&e))?
        .map_err(|r| refused(r, &agent_id))?;
    Ok(done(
        Some(&agent_id),
        RenewResponse {
            identity_token,
            identity_expires_at: identity.exp,
            certificate_expires_at: cert.as_ref().map(|c| c.not_after),
            certificate_pem: cert.map(|c| c.pem),
        },
    ))
}

async fn heartbeat(
    State(plane): State<Arc<ControlPlane>>,
    AgentAuth(claims): AgentAuth,
    request: Result<Json<HeartbeatRequest>, JsonRejection>,
) -> Reply<HeartbeatResponse> {
    let request = body(request)?;
    crate::model::text::check_agent_version(&request.agent_version)
        .map_err(ApiFailure::bad_request)?;
    if request.agent_version.is_empty() || request.agent_version.len() > 64 {
        return Err(ApiFailure::bad_request(
            "agent_version must be 1 to 64 characters",
        ));
    }
    let agent_id = claims.sub;
    let id = agent_id.clone();
    plane
        .db(move |reg| reg.heartbeat(&id, &request.agent_version, unix_now()))
        .await
        .map_err(|e| store_failure(&e))?
        .map_err(|r| refused(r, &agent_id))?;
    Ok(done(
        Some(&agent_id),
        HeartbeatResponse {
            state: RegistrationState::Registered,
            heartbeat_interval_secs: plane.settings.heartbeat_interval.as_secs(),
        },
    ))
}

async fn list_agents(
    State(plane): State<Arc<ControlPlane>>,
    OperatorAuth(_): OperatorAuth,
) -> Reply<Vec<AgentRecord>> {
    let lost_after = plane.settings.lost_after;
    let agents = plane
        .db(move |reg| reg.list(unix_now(), lost_after))
        .await
        .map_err(|e| store_failure(&e))?;
    Ok(done(None, agents))
}

async fn revoke(
    State(plane): State<Arc<ControlPlane>>,
    OperatorAuth(operator): OperatorAuth,
    Path(agent_id): Path<String>,
) -> Reply<AgentRecord> {
    let lost_after = plane.settings.lost_after;
    let id = agent_id.clone();
    let record = plane
        .db(move |reg| reg.revoke(&id, unix_now(), lost_after))
        .await
        .map_err(|e| store_failure(&e))?;
    let Some(record) = record else {
        return Err(ApiFailure::new(
            StatusCode::NOT_FOUND,
            "unknown_agent",
            format!("no agent {agent_id:?}; `fleetctl agents` lists them"),
        ));
    };
    tracing::info!(
        agent = record.agent_id,
        hostname = record.hostname,
        operator = operator.sub,
        "agent revoked"
    );
    Ok(done(Some(&record.agent_id.clone()), record))
}

/// Prometheus HTTP service discovery: one group per agent that is
/// registered or lost (a lost agent may still be up; Prometheus says so).
async fn service_discovery(
    State(plane): State<Arc<ControlPlane>>,
    OperatorAuth(_): OperatorAuth,
) -> Reply<Vec<SdTargetGroup>> {
    let lost_after = plane.settings.lost_after;
    let agents = plane
        .db(move |reg| reg.list(unix_now(), lost_after))
        .await
        .map_err(|e| store_failure(&e))?;
    Ok(done(None, sd_groups(&agents)))
}

pub(super) fn sd_groups(agents: &[AgentRecord]) -> Vec<SdTargetGroup> {
    agents
        .iter()
        .filter(|a| {
            matches!(
                a.state,
                RegistrationState::Registered | RegistrationState::Lost
            )
        })
        .map(|a| {
            let host = a.addresses.first().unwrap_or(&a.hostname);
            let target = match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", a.stats_port),
                _ => format!("{host}:{}", a.stats_port),
            };
            let labels = BTreeMap::from([
                ("__meta_fleet_agent_id".to_owned(), a.agent_id.clone()),
                ("__meta_fleet_hostname".to_owned(), a.hostname.clone()),
                ("__meta_fleet_state".to_owned(), a.state.as_str().to_owned()),
                (
                    "__meta_fleet_agent_version".to_owned(),
                    a.agent_version.clone(),
                ),
            ]);
            SdTargetGroup {
                targets: vec![target],
                labels,
            }
        })
        .collect()
}
