//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::power;
use crate::routes::{firmware, halls, leases, nodes, racks, site};

/// kiln's API description, served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "kiln inventory API", description = "Nodes, halls, leases and evidence of a kiln site."),
    paths(
        nodes::list, nodes::show, nodes::events, nodes::health, nodes::drain, nodes::repair, nodes::reimage, nodes::retest, firmware::node, firmware::drift, power::power,
        halls::list, halls::show, halls::map,
        leases::lease, leases::list, leases::show, leases::report, leases::progress, leases::release,
        leases::swap, racks::import, racks::lessees, racks::create_lessee, site::images, site::signing_key,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
