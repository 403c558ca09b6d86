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
use crate::pki::tls::PeerCertificate;

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
        tracing::debug!(code = e.code(), "token refused");
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

/// A request with a valid identity token (`sub` is the agent id), and the
/// serial of the certificate the agent showed on the connection, if any.
/// Whether that agent is still known, not revoked, and holds that
/// certificate is the handler's check (one registry query).
#[derive(Debug)]
pub(super) struct AgentAuth {
    pub claims: Claims,
    pub cert_serial: Option<String>,
}

/// A request with a valid, unrevoked operator token.
#[derive(Debug)]
pub(super) struct OperatorAuth(pub Claims);

/// A request with a valid, unrevoked sd (or operator) token: Prometheus
/// reading service discovery.
#[derive(Debug)]
pub(super) struct SdAuth;

impl FromRequestParts<Arc<ControlPlane>> for AgentAuth {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        let claims = bearer(parts, plane, &[Audience::Agent])?;
        let cert_serial = parts
            .extensions
            .get::<PeerCertificate>()
            .and_then(|c| crate::pki::cert_serial_der(&c.0));
        Ok(Self {
            claims,
            cert_serial,
        })
    }
}

impl FromRequestParts<Arc<ControlPlane>> for OperatorAuth {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        let claims = bearer(parts, plane, &[Audience::Operator])?;
        people_token(plane, claims).await.map(Self)
    }
}

impl FromRequestParts<Arc<ControlPlane>> for SdAuth {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        let claims = bearer(parts, plane, &[Audience::Sd, Audience::Operator])?;
        people_token(plane, claims).await.map(|_| Self)
    }
}

/// A person's token (operator or sd) must live no longer than the cap and
/// must not be revoked.
async fn people_token(plane: &Arc<ControlPlane>, claims: Claims) -> Result<Claims, ApiFailure> {
    if claims.lifetime() > plane.settings.max_operator_ttl {
        return Err(ApiFailure::token(TokenError::TooLong));
    }
    let revoked = plane
        .registry
        .revoked_tokens(crate::model::time::now_unix())
        .await
        .map_err(|e| ApiFailure::internal(&e))?
        .contains(&claims.jti);
    if revoked {
        return Err(ApiFailure::token(TokenError::Revoked));
    }
    Ok(claims)
}

fn bearer(parts: &Parts, plane: &ControlPlane, auds: &[Audience]) -> Result<Claims, ApiFailure> {
    let wanted: Vec<&str> = auds.iter().map(|a| a.as_str()).collect();
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            format!(
                "this call needs `Authorization: Bearer <token>` with a {} token",
                wanted.join(" or ")
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
    plane
        .verifier()
        .verify_for(token, &wanted)
        .map_err(ApiFailure::token)
}
