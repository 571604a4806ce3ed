//! Endpoint parsing and connecting by endpoint.

use kiln_bmc::redfish::TlsPolicy;
use kiln_bmc::target::{ConnectOptions, Endpoint, IPMI_PORT, connect};
use kiln_bmc::{BmcError, Credentials, PowerState};
use kiln_bmc_sim::profile;

use crate::common::one_bmc;

#[test]
fn ipmi_addresses_parse() {
    assert_eq!(
        Endpoint::ipmi("10.1.2.3").ok(),
        Some(Endpoint::Ipmi {
            host: "10.1.2.3".into(),
            port: IPMI_PORT
        })
    );
    assert_eq!(
        Endpoint::ipmi("bmc7:6230").ok(),
        Some(Endpoint::Ipmi {
            host: "bmc7".into(),
            port: 6230
        })
    );
    assert_eq!(
        Endpoint::ipmi("[::1]:624").ok(),
        Some(Endpoint::Ipmi {
            host: "::1".into(),
            port: 624
        })
    );
    assert_eq!(
        Endpoint::ipmi("[::1]").ok(),
        Some(Endpoint::Ipmi {
            host: "::1".into(),
            port: IPMI_PORT
        })
    );
    assert_eq!(
        Endpoint::ipmi("fe80::1").ok(),
        Some(Endpoint::Ipmi {
            host: "fe80::1".into(),
            port: IPMI_PORT
        })
    );
    for bad in ["", ":623", "host:notaport", "host:99999", "[::1"] {
        assert!(Endpoint::ipmi(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn redfish_endpoints_need_a_clear_trust_choice() {
    let fp = "ab".repeat(32);
    match Endpoint::redfish("bmc1.lab", Some(&fp), false) {
        Ok(Endpoint::Redfish {
            url,
            tls: Some(TlsPolicy::Pinned(_)),
        }) => assert_eq!(url, "https://bmc1.lab"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Endpoint::redfish("https://x", Some(&fp), true),
        Err(BmcError::Config { .. })
    ));
    assert!(matches!(
        Endpoint::redfish("https://x", Some("nope"), false),
        Err(BmcError::Config { .. })
    ));
    assert!(matches!(
        Endpoint::redfish("https://x", None, true),
        Ok(Endpoint::Redfish {
            tls: Some(TlsPolicy::Insecure),
            ..
        })
    ));
}

#[tokio::test]
async fn connect_by_endpoint_and_close_the_session() {
    let fleet = one_bmc(&profile::DELL).await;
    let endpoint = &fleet.endpoints()[0];
    let fingerprint = endpoint.fingerprint.map(|f| f.to_string());
    let target =
        Endpoint::redfish(&endpoint.redfish_url, fingerprint.as_deref(), false).expect("endpoint");
    let bmc = connect(
        &target,
        Credentials::new("admin", "password"),
        ConnectOptions::default(),
    )
    .expect("connect");
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::Off);
    assert_eq!(endpoint.bmc.lock().sessions.len(), 1);
    bmc.close().await;
    assert_eq!(endpoint.bmc.lock().sessions.len(), 0);
    let ipmi = Endpoint::ipmi("127.0.0.1:1").expect("ipmi endpoint");
    let long = "x".repeat(21);
    assert!(
        matches!(
            connect(
                &ipmi,
                Credentials::new("a", long),
                ConnectOptions::default()
            ),
            Err(BmcError::Config { .. })
        ),
        "IPMI passwords are at most 20 bytes"
    );
}

#[tokio::test]
async fn trust_on_first_use_pins_the_presented_certificate() {
    let fleet = one_bmc(&profile::HPE).await;
    let endpoint = &fleet.endpoints()[0];
    let mut target = Endpoint::redfish(&endpoint.redfish_url, None, false).expect("endpoint");
    let pinned = target
        .pin_on_first_use(std::time::Duration::from_secs(5))
        .await
        .expect("probe");
    assert_eq!(pinned, endpoint.fingerprint);
    assert_eq!(
        target
            .pin_on_first_use(std::time::Duration::from_secs(5))
            .await
            .expect("no-op"),
        None
    );
    let bmc = connect(
        &target,
        Credentials::new("admin", "password"),
        ConnectOptions::default(),
    )
    .expect("connect");
    assert_eq!(
        bmc.power_state().await.expect("pinned call"),
        PowerState::Off
    );
    let mut ipmi = Endpoint::ipmi("127.0.0.1:623").expect("ipmi");
    assert_eq!(
        ipmi.pin_on_first_use(std::time::Duration::from_secs(1))
            .await
            .expect("nothing to pin"),
        None
    );
}
