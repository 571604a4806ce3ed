//! A BMC that answers garbage, closes the connection, sends a huge body, redirects or never answers: every
//! case ends in a bounded, typed error.

use std::time::{Duration, Instant};

use kiln_bmc::redfish::{RedfishClient, RedfishConfig};
use kiln_bmc::{Bmc, BmcError, Credentials};
use kiln_bmc_sim::hostile::{HostileServer, Hostility};

async fn against(hostility: Hostility) -> BmcError {
    let server = HostileServer::start(hostility)
        .await
        .expect("hostile server");
    let mut config = RedfishConfig::new(
        server.url.clone(),
        Credentials::new("admin", "password"),
        None,
    );
    config.request_timeout = Duration::from_millis(500);
    config.max_body_bytes = 1024 * 1024;
    let client = RedfishClient::new(config).expect("client");
    let started = Instant::now();
    let err = client
        .power_state()
        .await
        .expect_err("a hostile server must not succeed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{hostility:?} took {:?}",
        started.elapsed()
    );
    err
}

#[tokio::test]
async fn garbage_and_non_objects_are_protocol_errors() {
    for hostility in [Hostility::Garbage, Hostility::NotAnObject] {
        let err = against(hostility).await;
        assert!(
            matches!(err, BmcError::Protocol { .. }),
            "{hostility:?}: {err}"
        );
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn huge_bodies_are_refused_without_reading_them() {
    let err = against(Hostility::DeclaredHugeBody).await;
    assert!(
        matches!(&err, BmcError::Protocol { detail, .. } if detail.contains("2147483648")),
        "{err}"
    );
    let err = against(Hostility::EndlessBody).await;
    assert!(
        matches!(&err, BmcError::Protocol { detail, .. } if detail.contains("limit")),
        "{err}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let err = against(Hostility::Redirect).await;
    match &err {
        BmcError::Protocol { detail, .. } => assert!(detail.contains("redirect"), "{detail}"),
        other => panic!("expected a protocol error, got {other}"),
    }
}

#[tokio::test]
async fn closed_malformed_and_silent_connections() {
    let err = against(Hostility::CloseImmediately).await;
    assert!(matches!(err, BmcError::Connect { .. }), "{err}");
    let err = against(Hostility::MalformedHttp).await;
    assert!(matches!(err, BmcError::Connect { .. }), "{err}");
    let err = against(Hostility::Silent).await;
    assert!(matches!(err, BmcError::Timeout { .. }), "{err}");
}
