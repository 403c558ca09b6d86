//! The stats API: `GET /v1/stats` (JSON), `GET /metrics` (Prometheus),
//! both behind a stats token, and `GET /healthz`, open. Handlers read
//! the latest snapshots only; none touches /proc or waits on anything.
//!
//! A stats token is read-only: a fleet-wide one (`fleetctl token stats`,
//! for Prometheus) or one for this agent alone (the console's). Operator
//! tokens are refused here, so an agent never sees anything that works on
//! the control plane; revoked tokens are refused once the control plane
//! says so (with the next heartbeat).

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;

use super::collect::{Samples, now_ms};
use super::metrics;
use super::supervisor::Published;
use crate::auth::TokenError;
use crate::model::control::ApiError;
use crate::model::stats::{AgentStats, SampleInfo};

/// What every handler reads.
#[derive(Clone)]
pub struct ApiState {
    pub samples: Samples,
    pub published: watch::Receiver<Arc<Published>>,
    pub hostname: Arc<str>,
    pub started_at_ms: i64,
}

/// The stats API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/stats", get(stats))
        .route("/metrics", get(prometheus))
        .with_state(state)
}

async fn stats(_: StatsReader, State(s): State<ApiState>) -> Json<AgentStats> {
    let sample = Arc::clone(&s.samples.borrow());
    let published = Arc::clone(&s.published.borrow());
    let now = now_ms();
    let life = &published.life;
    Json(AgentStats {
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: s.hostname.to_string(),
        host_uptime_secs: sample.host_uptime_secs,
        agent_uptime_secs: u64::try_from((now - s.started_at_ms) / 1000).unwrap_or(0),
        agent_rss_bytes: sample.agent_rss_bytes,
        cpu: sample.cpu.clone(),
        memory: sample.memory_stats(),
        registration: life.registration_status(now),
        token: life.token_status(now),
        certificate: life.cert_status(now),
        sample: SampleInfo {
            taken_at_ms: sample.taken_at_ms,
            interval_ms: sample.interval_ms,
        },
    })
}

async fn prometheus(_: StatsReader, State(s): State<ApiState>) -> Response {
    let sample = Arc::clone(&s.samples.borrow());
    let published = Arc::clone(&s.published.borrow());
    let who = metrics::Identity {
        version: env!("CARGO_PKG_VERSION"),
        hostname: &s.hostname,
        agent_start_secs: s.started_at_ms / 1000,
    };
    let page = metrics::render(&sample, &published.life, who, now_ms());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], page).into_response()
}

/// A request carrying a valid stats token for this agent
/// (`Authorization: Bearer`). Anything else is refused with 401 (no or a
/// bad token) or 403 (a token of another kind, for another agent, revoked
/// or too long-lived) and an [`ApiError`] saying why.
struct StatsReader;

impl FromRequestParts<ApiState> for StatsReader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, Response> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(unauthorized(
                "missing_token",
                "send a stats token: Authorization: Bearer <token from `fleetctl token stats`>",
            ));
        };
        let trust = s.published.borrow().trust.clone();
        let Some(trust) = trust else {
            return Err(unauthorized(
                "not_registered",
                "this agent has not registered yet, so it cannot check tokens",
            ));
        };
        trust.check(token).map_err(|e| {
            tracing::debug!(code = e.code(), "stats token refused");
            let status = match e {
                TokenError::WrongAudience | TokenError::Revoked | TokenError::TooLong => {
                    StatusCode::FORBIDDEN
                }
                _ => StatusCode::UNAUTHORIZED,
            };
            refusal(status, e.code(), &e.to_string())
        })?;
        Ok(Self)
    }
}

fn unauthorized(code: &str, reason: &str) -> Response {
    refusal(StatusCode::UNAUTHORIZED, code, reason)
}

fn refusal(status: StatusCode, code: &str, reason: &str) -> Response {
    (
        status,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(ApiError {
            error: code.to_owned(),
            reason: reason.to_owned(),
        }),
    )
        .into_response()
}
