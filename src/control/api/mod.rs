//! The HTTPS API's routes and handlers (the table is in
//! [`crate::model::control`]): the operators' side and Prometheus's here,
//! the agents' in [`agent`].

mod agent;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::ControlPlane;
use super::extract::{ApiFailure, LogNote, OperatorAuth, SdAuth};
use crate::auth::JoinGrant;
use crate::model::RegistrationState;
use crate::model::control::{
    AgentRecord, Health, JoinTokenRequest, JoinTokenResponse, SdTargetGroup,
};
use crate::model::time::now_unix;
use crate::pki::RevokedSerial;
use crate::store::registry::Refusal;

/// The longest join token the API hands out.
const MAX_JOIN_TTL: Duration = Duration::from_hours(24);
/// Most addresses an agent may register with, or a join token vouch for.
const MAX_ADDRESSES: usize = 32;
/// How long a CRL is good for: clients read a fresh one far more often.
const CRL_VALIDITY: Duration = Duration::from_mins(10);

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
        .route("/v1/register", post(agent::register))
        .route("/v1/renew", post(agent::renew))
        .route("/v1/heartbeat", post(agent::heartbeat))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}/revoke", post(revoke))
        .route("/v1/sd", get(service_discovery))
        .route("/v1/crl", get(revocation_list))
        .route("/healthz", get(health))
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
        Refusal::Certificate => ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "show this agent's own, unrevoked certificate on the connection (TLS client \
             authentication); an identity token alone is not enough",
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
    if request.names.len() > MAX_ADDRESSES {
        return Err(ApiFailure::bad_request(format!(
            "at most {MAX_ADDRESSES} names"
        )));
    }
    for name in &request.names {
        check_name(name, "name")?;
    }
    let ttl = request.ttl_secs.map(Duration::from_secs);
    if ttl.is_some_and(|t| t > MAX_JOIN_TTL || t.is_zero()) {
        return Err(ApiFailure::bad_request(format!(
            "ttl_secs must be between 1 and {}",
            MAX_JOIN_TTL.as_secs()
        )));
    }
    let grant = JoinGrant {
        host: request.host.clone(),
        names: request.names.clone(),
        control_pin: None,
    };
    let (token, claims) = plane
        .join_token(&grant, ttl)
        .map_err(|e| ApiFailure::internal(&e))?;
    tracing::info!(
        host = request.host,
        names = ?claims.names,
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

async fn list_agents(
    State(plane): State<Arc<ControlPlane>>,
    OperatorAuth(_): OperatorAuth,
) -> Reply<Vec<AgentRecord>> {
    let lost_after = plane.settings.lost_after;
    let agents = plane
        .registry
        .list(now_unix(), lost_after)
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
    let record = plane
        .registry
        .revoke(agent_id.clone(), now_unix(), lost_after)
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

/// Open, like any health check: whether this control plane can serve, and
/// its registry's state (backend, reachable, schema version); 503 when
/// the registry does not answer, so a load balancer sends agents to a
/// replica that can.
async fn health(State(plane): State<Arc<ControlPlane>>) -> Response {
    let registry = plane.registry.health().await;
    let ok = registry.state == "ok";
    let body = Health {
        status: if ok { "ok" } else { "unavailable" }.to_owned(),
        registry,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus HTTP service discovery: one group per agent that is
/// registered or lost (a lost agent may still be up; Prometheus says so).
/// Takes an sd token (read-only, good for nothing else), or an operator's.
/// Not a stats token: those are sent to every agent scraped, so a host that
/// keeps one must not learn the fleet's map with it.
async fn service_discovery(
    State(plane): State<Arc<ControlPlane>>,
    _: SdAuth,
) -> Reply<Vec<SdTargetGroup>> {
    let lost_after = plane.settings.lost_after;
    let agents = plane
        .registry
        .list(now_unix(), lost_after)
        .await
        .map_err(|e| store_failure(&e))?;
    Ok(done(None, sd_groups(&agents)))
}

/// The fleet CA's certificate revocation list (DER), open like any CRL:
/// it is signed by the CA, so nobody can forge one, and it says nothing
/// but serial numbers. The console reads it while it polls agents.
async fn revocation_list(State(plane): State<Arc<ControlPlane>>) -> Response {
    let now = now_unix();
    let crl = plane.registry.revoked_certs(now).await.map(|revoked| {
        let revoked: Vec<RevokedSerial> = revoked
            .into_iter()
            .map(|(serial, revoked_at)| RevokedSerial { serial, revoked_at })
            .collect();
        plane
            .ca
            .crl(&revoked, u64::try_from(now).unwrap_or(0), CRL_VALIDITY)
    });
    match crl {
        Ok(Ok(der)) => (
            [(axum::http::header::CONTENT_TYPE, "application/pkix-crl")],
            der,
        )
            .into_response(),
        Ok(Err(e)) => ApiFailure::internal(&e).into_response(),
        Err(e) => store_failure(&e).into_response(),
    }
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
            // The first address the join token vouched for, in its issuer's order.
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
