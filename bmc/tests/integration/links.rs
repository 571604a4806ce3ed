//! A hostile BMC whose links point elsewhere (`//host`, backslashes, encoded separators, `user@` forms, another
//! port or scheme), at every place kiln follows a link: kiln refuses each with an error naming the link, and no
//! request, least of all one with credentials, reaches the other host.

use std::time::Duration;

use kiln_bmc::redfish::{RedfishClient, RedfishConfig, TlsPolicy};
use kiln_bmc::{Bmc, BmcError, Credentials, PowerAction, PowerState};
use kiln_bmc_sim::links::{LinkKind, LinkPlace, LinkTrapBmc, PASSWORD};

async fn trap(hostile: Option<(LinkKind, LinkPlace)>, tls: bool) -> LinkTrapBmc {
    LinkTrapBmc::start(hostile, tls).await.expect("link trap")
}

fn client(url: &str, bmc: &LinkTrapBmc) -> RedfishClient {
    let mut config = RedfishConfig::new(
        url,
        Credentials::new("admin", PASSWORD),
        bmc.fingerprint.map(TlsPolicy::Pinned),
    );
    config.request_timeout = Duration::from_secs(5);
    config.poll_interval = Duration::from_millis(10);
    config.task_timeout = Duration::from_secs(5);
    RedfishClient::new(config).expect("client")
}

/// What kiln does that follows the link at `place`.
async fn operate(client: &RedfishClient, place: LinkPlace) -> Result<(), BmcError> {
    let result = match place {
        LinkPlace::TaskMonitor => client.set_power(PowerAction::On).await,
        _ => client.power_state().await.map(|_| ()),
    };
    client.close().await;
    result
}

#[tokio::test]
async fn the_fixture_is_a_working_bmc_and_its_other_host_records_what_reaches_it() {
    let honest = trap(None, true).await;
    let kiln = client(&honest.url, &honest);
    assert_eq!(
        kiln.power_state().await.expect("honest BMC"),
        PowerState::Off
    );
    kiln.set_power(PowerAction::On)
        .await
        .expect("reset with a task monitor");
    kiln.close().await;
    assert!(honest.trap_hits().is_empty(), "{:?}", honest.trap_hits());

    // A client that goes to the other host succeeds there, and every request it sent is on record.
    let misled = client(&honest.trap_url, &honest);
    assert_eq!(
        misled.power_state().await.expect("other host"),
        PowerState::Off
    );
    misled.close().await;
    let hits = honest.trap_hits();
    assert!(hits.iter().any(|hit| hit.password_in_body), "{hits:?}");
    assert!(hits.iter().any(|hit| hit.authenticated), "{hits:?}");
}

#[tokio::test]
async fn links_away_from_the_bmc_are_refused_and_never_followed() {
    for tls in [true, false] {
        for place in LinkPlace::ALL {
            for kind in LinkKind::ALL {
                let bmc = trap(Some((kind, place)), tls).await;
                let link = bmc.link.clone().expect("hostile link");
                let result = operate(&client(&bmc.url, &bmc), place).await;
                let case = format!("{kind:?} at {place:?} (tls {tls}), link {link:?}");
                let hits = bmc.trap_hits();
                assert!(
                    hits.is_empty(),
                    "{case}: requests reached the other host: {hits:?}"
                );
                let err = match result {
                    Ok(()) => panic!("{case}: the operation succeeded"),
                    Err(err) => err,
                };
                let text = err.to_string();
                assert!(
                    matches!(err, BmcError::Protocol { .. }) && !err.is_transient(),
                    "{case}: {text}"
                );
                assert!(
                    text.contains(&format!("{link:?}")) && text.contains("refused link"),
                    "{case}: the error names the link: {text}"
                );
            }
        }
    }
}
