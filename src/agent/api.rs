//! The stats API: `GET /v1/stats` (JSON), `GET /metrics` (Prometheus),
//! both behind an operator token, and `GET /healthz`, open. Handlers read
//! the latest snapshots only; none touches /proc or waits on anything.

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
use crate::auth::Audience;
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

async fn stats(_: Operator, State(s): State<ApiState>) -> Json<AgentStats> {
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

async fn prometheus(_: Operator, State(s): State<ApiState>) -> Response {
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

/// A request carrying a valid operator token (`Authorization: Bearer`).
/// Anything else is refused with 401 and an [`ApiError`] saying why.
struct Operator;

impl FromRequestParts<ApiState> for Operator {
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
                "send an operator token: Authorization: Bearer <token from `fleetctl token operator`>",
            ));
        };
        let verifier = s.published.borrow().verifier.clone();
        let Some(verifier) = verifier else {
            return Err(unauthorized(
                "not_registered",
                "this agent has not registered yet, so it cannot check operator tokens",
            ));
        };
        match verifier.verify(token, Audience::Operator) {
            Ok(_) => Ok(Self),
            Err(e) => {
                tracing::debug!(code = e.code(), "operator token refused");
                Err(unauthorized(e.code(), &e.to_string()))
            }
        }
    }
}

fn unauthorized(code: &str, reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(ApiError {
            error: code.to_owned(),
            reason: reason.to_owned(),
        }),
    )
        .into_response()
}
