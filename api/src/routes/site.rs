//! Site-wide reads: the image catalog and the public half of the site's signing key.

use axum::Json;
use axum::extract::State;
use kiln_inventory::{Image, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// The image catalog.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    /// By name and version.
    pub images: Vec<Image>,
}

/// The key acceptance records are signed with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyInfo {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Public key, hex: what `kiln health verify --public-key` takes.
    pub public_key_hex: String,
}

/// List cataloged images (admin, technician, pipeline).
#[utoipa::path(get, path = "/api/v1/images", security(("bearer" = [])),
    responses((status = 200, body = ImageList), (status = 403, body = ErrorBody)))]
pub async fn images(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<ImageList>, ApiError> {
    caller.require(&[Role::Technician, Role::Pipeline])?;
    Ok(Json(ImageList {
        images: state.store.images().await?,
    }))
}

/// The site's signing public key, to verify acceptance reports with (any role).
#[utoipa::path(get, path = "/api/v1/signing-key", security(("bearer" = [])),
    responses((status = 200, body = SigningKeyInfo), (status = 503, body = ErrorBody)))]
pub async fn signing_key(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<Json<SigningKeyInfo>, ApiError> {
    let key = state.signing_key()?;
    Ok(Json(SigningKeyInfo {
        algorithm: kiln_health::evidence::ALGORITHM.to_string(),
        public_key_hex: hex::encode(key.verifying_key().as_bytes()),
    }))
}
