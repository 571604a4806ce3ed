//! `/api/v1/racks/import` and `/api/v1/lessees`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use kiln_inventory::{ImportSummary, Lessee, ManifestFormat, Role, parse_manifest};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

/// Body of `POST /api/v1/racks/import`.
#[derive(Debug, Clone, serde::Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// `csv` or `toml`.
    pub format: String,
    /// The manifest text. Passwords must be inline (`bmc_password`); the server does not read its environment
    /// for `bmc_password_env` on behalf of API callers.
    pub manifest: String,
    /// Site for rows that name none (default `default`).
    pub site: Option<String>,
}

/// Import a rack manifest (pipeline, admin). Any problem rejects the whole manifest, listed by line.
#[utoipa::path(post, path = "/api/v1/racks/import", request_body = ImportRequest, security(("bearer" = [])),
    responses((status = 200, body = ImportSummary), (status = 422, body = ErrorBody)))]
pub async fn import(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<ImportRequest>,
) -> Result<Json<ImportSummary>, ApiError> {
    caller.require(&[Role::Pipeline])?;
    let format = match request.format.as_str() {
        "csv" => ManifestFormat::Csv,
        "toml" => ManifestFormat::Toml,
        other => {
            return Err(ApiError::bad_request(format!(
                "format {other:?} is not csv or toml"
            )));
        }
    };
    let rows = parse_manifest(&request.manifest, format, &|_| None)
        .map_err(kiln_inventory::StoreError::from)?;
    let site = request.site.as_deref().unwrap_or("default");
    Ok(Json(
        state
            .store
            .import_manifest(&rows, site, &caller.actor())
            .await?,
    ))
}

/// Lessees (admin).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct LesseeList {
    /// By name.
    pub lessees: Vec<Lessee>,
}

/// Body of `POST /api/v1/lessees`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLessee {
    /// Unique name.
    pub name: String,
    /// Contact, free text.
    pub contact: Option<String>,
}

/// List lessees (admin).
#[utoipa::path(get, path = "/api/v1/lessees", security(("bearer" = [])), responses((status = 200, body = LesseeList)))]
pub async fn lessees(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<LesseeList>, ApiError> {
    caller.require(&[])?;
    Ok(Json(LesseeList {
        lessees: state.store.list_lessees().await?,
    }))
}

/// Create a lessee (admin); returns the existing one when the name is taken.
#[utoipa::path(post, path = "/api/v1/lessees", request_body = NewLessee, security(("bearer" = [])),
    responses((status = 201, body = Lessee), (status = 400, body = ErrorBody)))]
pub async fn create_lessee(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewLessee>,
) -> Result<(StatusCode, Json<Lessee>), ApiError> {
    caller.require(&[])?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request(
            "lessee name must be 1–128 characters",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .store
                .upsert_lessee(name, request.contact.as_deref())
                .await?,
        ),
    ))
}
