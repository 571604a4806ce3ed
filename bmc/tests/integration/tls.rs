//! Certificate pinning, trust on first use, insecure mode and plain HTTP.

use std::time::Duration;

use kiln_bmc::redfish::{
    CertFingerprint, RedfishClient, RedfishConfig, TlsPolicy, probe_fingerprint,
};
use kiln_bmc::{Bmc, BmcError, Credentials, PowerState};
use kiln_bmc_sim::profile;
use kiln_bmc_sim::{SimFleet, SimFleetConfig};

use crate::common::one_bmc;

fn client(url: &str, tls: Option<TlsPolicy>) -> Result<RedfishClient, BmcError> {
    RedfishClient::new(RedfishConfig::new(
        url,
        Credentials::new("admin", "password"),
        tls,
    ))
}

#[tokio::test]
async fn trust_on_first_use_then_pinned() {
    let fleet = one_bmc(&profile::DELL).await;
    let endpoint = &fleet.endpoints()[0];
    let port: u16 = endpoint
        .redfish_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let probed = probe_fingerprint("127.0.0.1", port, Duration::from_secs(5))
        .await
        .expect("probe");
    assert_eq!(Some(probed), endpoint.fingerprint);
    let pinned = client(&endpoint.redfish_url, Some(TlsPolicy::Pinned(probed))).expect("client");
    assert_eq!(
        pinned.power_state().await.expect("pinned call"),
        PowerState::Off
    );
}

#[tokio::test]
async fn a_different_certificate_is_refused_with_both_fingerprints() {
    let fleet = one_bmc(&profile::HPE).await;
    let endpoint = &fleet.endpoints()[0];
    let wrong = CertFingerprint([7u8; 32]);
    let client = client(&endpoint.redfish_url, Some(TlsPolicy::Pinned(wrong))).expect("client");
    match client.power_state().await {
        Err(BmcError::CertificateMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong.to_string());
            assert_eq!(Some(actual), endpoint.fingerprint.map(|f| f.to_string()));
        }
        other => panic!("expected a certificate mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn https_needs_a_policy_and_insecure_must_be_explicit() {
    let fleet = one_bmc(&profile::OPENBMC).await;
    let url = &fleet.endpoints()[0].redfish_url;
    let err = client(url, None).expect_err("no policy");
    assert!(matches!(err, BmcError::Config { .. }), "{err}");
    let insecure = client(url, Some(TlsPolicy::Insecure)).expect("insecure client");
    assert_eq!(
        insecure.power_state().await.expect("insecure call"),
        PowerState::Off
    );
    let err = client("ftp://127.0.0.1:1", None).expect_err("bad scheme");
    assert!(matches!(err, BmcError::Config { .. }), "{err}");
}

#[tokio::test]
async fn plain_http_is_allowed_for_tests() {
    let fleet = SimFleet::start(SimFleetConfig {
        tls: false,
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet");
    let endpoint = &fleet.endpoints()[0];
    assert!(endpoint.redfish_url.starts_with("http://"));
    assert!(endpoint.fingerprint.is_none());
    let client = client(&endpoint.redfish_url, None).expect("client");
    assert_eq!(
        client.power_state().await.expect("http call"),
        PowerState::Off
    );
}

#[test]
fn fingerprints_parse_in_common_spellings() {
    let hex = "ab".repeat(32);
    let colons = vec!["AB"; 32].join(":");
    let a: CertFingerprint = hex.parse().expect("plain hex");
    let b: CertFingerprint = colons.parse().expect("colon hex");
    let c: CertFingerprint = format!("sha256:{hex}").parse().expect("prefixed");
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.to_string(), hex);
    assert!("abcd".parse::<CertFingerprint>().is_err());
    assert!("zz".repeat(32).parse::<CertFingerprint>().is_err());
}
