//! Fault knobs of the simulator and how the client reports them (typed, transient or permanent).

use std::time::Duration;

use kiln_bmc::redfish::{RedfishClient, RedfishConfig, TlsPolicy};
use kiln_bmc::{Bmc, BmcError, Credentials, PowerAction, PowerState};
use kiln_bmc_sim::profile;

use crate::common::{client_for, one_bmc};

#[tokio::test]
async fn wrong_credentials_are_a_permanent_auth_error() {
    for profile in kiln_bmc_sim::profile::ALL {
        let fleet = one_bmc(profile).await;
        fleet.endpoints()[0]
            .bmc
            .update_faults(|f| f.wrong_credentials = true);
        let err = client_for(&fleet).power_state().await.expect_err("refused");
        assert!(
            matches!(err, BmcError::Auth { .. }),
            "{}: {err}",
            profile.name
        );
        assert!(!err.is_transient());
    }
    // A wrong password, not a fault knob.
    let fleet = one_bmc(&profile::DELL).await;
    let endpoint = &fleet.endpoints()[0];
    let config = RedfishConfig::new(
        endpoint.redfish_url.clone(),
        Credentials::new("admin", "wrong"),
        endpoint.fingerprint.map(TlsPolicy::Pinned),
    );
    let err = RedfishClient::new(config)
        .expect("client")
        .power_state()
        .await
        .expect_err("refused");
    assert!(matches!(err, BmcError::Auth { .. }), "{err}");
}

#[tokio::test]
async fn a_service_that_wants_basic_auth_even_for_login_gets_it_and_a_bad_password_names_both_tries()
 {
    // sushy-emulator with basic auth: the session login itself answers 401 without basic credentials.
    let fleet = one_bmc(&profile::DELL).await;
    let endpoint = &fleet.endpoints()[0];
    endpoint.bmc.update_faults(|f| f.basic_only = true);
    let client = client_for(&fleet);
    assert_eq!(
        client.power_state().await.expect("basic auth"),
        PowerState::Off
    );
    assert!(!client.has_session().await, "no session was created");
    client
        .set_power(PowerAction::On)
        .await
        .expect("power on over basic auth");
    let config = RedfishConfig::new(
        endpoint.redfish_url.clone(),
        Credentials::new("admin", "wrong"),
        endpoint.fingerprint.map(TlsPolicy::Pinned),
    );
    let err = RedfishClient::new(config)
        .expect("client")
        .power_state()
        .await
        .expect_err("refused");
    assert!(matches!(err, BmcError::Auth { .. }), "{err}");
    assert!(
        err.to_string().contains("session login, then basic auth"),
        "{err}"
    );
}

#[tokio::test]
async fn a_busy_bmc_is_transient() {
    let fleet = one_bmc(&profile::HPE).await;
    fleet.endpoints()[0].bmc.update_faults(|f| f.busy = true);
    let err = client_for(&fleet).power_state().await.expect_err("busy");
    assert!(matches!(err, BmcError::Busy { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_session_limit_is_reported_as_busy() {
    let fleet = one_bmc(&profile::OPENBMC).await;
    fleet.endpoints()[0]
        .bmc
        .update_faults(|f| f.session_limit = 1);
    let first = client_for(&fleet);
    first.power_state().await.expect("first session");
    let err = client_for(&fleet)
        .power_state()
        .await
        .expect_err("second session refused");
    assert!(matches!(err, BmcError::Busy { .. }), "{err}");
    first.logout().await;
    client_for(&fleet)
        .power_state()
        .await
        .expect("room again after logout");
}

#[tokio::test]
async fn stuck_power_is_visible_as_no_change() {
    let fleet = one_bmc(&profile::DELL).await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    bmc.update_faults(|f| f.stuck_power = true);
    let client = client_for(&fleet);
    client.set_power(PowerAction::On).await.expect("accepted");
    // Give the simulated hardware well past its 50 ms power-on time, then check nothing changed.
    let changed = crate::common::wait_until(Duration::from_millis(300), || async {
        client.power_state().await.ok() != Some(PowerState::Off)
    })
    .await;
    assert!(!changed, "power must stay off");
    assert_eq!(bmc.power(), PowerState::Off);
}

#[tokio::test]
async fn dropped_connections_and_slow_answers() {
    let fleet = one_bmc(&profile::SUPERMICRO).await;
    let bmc = fleet.endpoints()[0].bmc.clone();
    bmc.update_faults(|f| f.drop_connections = true);
    let err = client_for(&fleet).power_state().await.expect_err("dropped");
    assert!(matches!(err, BmcError::Connect { .. }), "{err}");
    assert!(err.is_transient());

    bmc.set_faults(kiln_bmc_sim::Faults {
        latency: Duration::from_millis(500),
        ..Default::default()
    });
    let endpoint = &fleet.endpoints()[0];
    let mut config = RedfishConfig::new(
        endpoint.redfish_url.clone(),
        Credentials::new("admin", "password"),
        endpoint.fingerprint.map(TlsPolicy::Pinned),
    );
    config.request_timeout = Duration::from_millis(100);
    let err = RedfishClient::new(config)
        .expect("client")
        .power_state()
        .await
        .expect_err("too slow");
    assert!(matches!(err, BmcError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn server_errors_are_transient_rejections() {
    let fleet = one_bmc(&profile::OPENBMC).await;
    fleet.endpoints()[0]
        .bmc
        .update_faults(|f| f.error_rate = 1.0);
    let err = client_for(&fleet).power_state().await.expect_err("500");
    assert!(
        matches!(err, BmcError::Rejected { status: 500, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("Simulated internal error"),
        "{err}"
    );
}
