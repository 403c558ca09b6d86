//! Authentication as axum extractors, one per token kind, and the one
//! shape of every refusal: a status and an [`ApiError`] body. Each
//! response carries a [`LogNote`] so the request log can name the agent
//! and the reason without ever seeing a token.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ControlPlane;
use crate::auth::{Audience, Claims, TokenError};
use crate::model::control::ApiError;

/// What the request log says about a response besides method, path and status.
#[derive(Debug, Clone, Default)]
pub(super) struct LogNote {
    pub agent: Option<String>,
    pub code: Option<&'static str>,
}

/// A refusal: status, stable code, reason for people.
#[derive(Debug)]
pub(super) struct ApiFailure {
    pub status: StatusCode,
    pub code: &'static str,
    pub reason: String,
    pub agent: Option<String>,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            agent: None,
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed inside the control plane");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the control plane failed to handle the request; see its log",
        )
    }

    /// A refused token: 403 for a token for another audience, 401 otherwise.
    pub fn token(e: TokenError) -> Self {
        let status = match e {
            TokenError::WrongAudience => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.code(), e.to_string())
    }

    pub fn for_agent(mut self, agent: &str) -> Self {
        self.agent = Some(agent.to_owned());
        self
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let note = LogNote {
            agent: self.agent,
            code: Some(self.code),
        };
        let body = ApiError {
            error: self.code.to_owned(),
            reason: self.reason,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(note);
        response
    }
}

/// A request with a valid identity token: `sub` is the agent id. Whether
/// that agent is still known and not revoked is the handler's check.
#[derive(Debug)]
pub(super) struct AgentAuth(pub Claims);

/// A request with a valid operator token.
#[derive(Debug)]
pub(super) struct OperatorAuth(pub Claims);

impl FromRequestParts<Arc<ControlPlane>> for AgentAuth {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        bearer(parts, plane, Audience::Agent).map(Self)
    }
}

impl FromRequestParts<Arc<ControlPlane>> for OperatorAuth {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        bearer(parts, plane, Audience::Operator).map(Self)
    }
}

fn bearer(parts: &Parts, plane: &ControlPlane, aud: Audience) -> Result<Claims, ApiFailure> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            format!(
                "this call needs `Authorization: Bearer <token>` with a {} token",
                aud.as_str()
            ),
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiFailure::new(
                StatusCode::UNAUTHORIZED,
                "malformed_token",
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
    plane.verifier.verify(token, aud).map_err(ApiFailure::token)
}
