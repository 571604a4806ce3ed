//! Bearer-token authentication and role checks.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use kiln_inventory::{Principal, Role};

use crate::ApiState;
use crate::error::ApiError;

/// The authenticated caller; extracting it rejects requests without a valid `Authorization: Bearer` token.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("Authorization header is not `Bearer <token>`"))?;
        match state.store.authenticate(token.trim()).await? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(unauthorized("invalid or revoked token")),
        }
    }
}

impl Caller {
    /// Refuses (403) unless the caller has one of `roles` (admin always passes).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.0.role == Role::Admin || roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("a {} token may not do this", self.0.role),
            ))
        }
    }

    /// The lessee name when the caller is a lessee (whose view is restricted to its own leases).
    pub fn lessee(&self) -> Option<&str> {
        match (&self.0.role, &self.0.lessee) {
            (Role::Lessee, Some((_, name))) => Some(name.as_str()),
            // A lessee token without a lessee (never created by kiln) sees nothing rather than everything.
            (Role::Lessee, None) => Some(""),
            _ => None,
        }
    }

    /// The actor name for event logs.
    pub fn actor(&self) -> String {
        self.0.actor()
    }
}
