//! HTTP boot endpoints: scripts by node state with events, assets, and token-checked reports.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kiln_inventory::{MacAddr, NewLease, NodeState};
use kiln_provisioner::boot::http::{BootHttp, BootHttpConfig};
use tower::ServiceExt;

use crate::support::{TestStore, node_mac};

struct Fixture {
    db: TestStore,
    router: Router,
    assets: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let db = TestStore::with_nodes(3).await;
    let assets = tempfile::tempdir().expect("assets");
    std::fs::write(assets.path().join("vmlinuz"), b"kernel bytes").expect("write");
    std::fs::write(assets.path().join("initramfs.img"), vec![7u8; 100_000]).expect("write");
    let config = BootHttpConfig::new("http://10.9.0.1:8080/", assets.path());
    let router = BootHttp::new(db.store.clone(), config).router();
    Fixture { db, router, assets }
}

/// The address test requests come from, unless a test says otherwise.
const PEER: &str = "127.0.0.1:40000";

async fn call(router: &Router, mut request: Request<Body>) -> (StatusCode, Vec<u8>) {
    if request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_none()
    {
        request
            .extensions_mut()
            .insert(ConnectInfo(PEER.parse::<SocketAddr>().expect("peer")));
    }
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let (status, body) = call(router, request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn report(router: &Router, mac: MacAddr, token: Option<&str>, text: &str) -> StatusCode {
    let mut request = Request::post(format!("/boot/report/{mac}"));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    call(
        router,
        request.body(Body::from(text.to_string())).expect("request"),
    )
    .await
    .0
}

/// Opens the engine's boot grant for node `n` (what a PXE boot request does), with a 15-minute window.
async fn grant(fx: &Fixture, n: u8) {
    let node = fx
        .db
        .store
        .node_by_serial(&format!("SN{n}"))
        .await
        .expect("node");
    fx.db
        .store
        .open_boot_grant(node.id, fx.db.store.now(), Duration::from_secs(900))
        .await
        .expect("grant");
}

async fn get_from(router: &Router, uri: &str, peer: &str) -> String {
    let mut request = Request::get(uri).body(Body::empty()).expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("peer")));
    String::from_utf8_lossy(&call(router, request).await.1).into_owned()
}

async fn report_from(router: &Router, mac: MacAddr, token: &str, peer: &str) -> StatusCode {
    let mut request = Request::post(format!("/boot/report/{mac}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from("booted"))
        .expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("peer")));
    call(router, request).await.0
}

async fn last_event(fx: &Fixture, n: u8) -> String {
    let node = fx
        .db
        .store
        .node_by_serial(&format!("SN{n}"))
        .await
        .expect("node");
    let events = fx.db.store.node_events(node.id).await.expect("events");
    events.last().expect("an event").reason.clone()
}

/// The value of `kiln.token=` in a script.
fn token_of(script: &str) -> String {
    script
        .split_whitespace()
        .find_map(|word| word.strip_prefix("kiln.token="))
        .expect("script carries a token")
        .to_string()
}

#[tokio::test]
async fn scripts_follow_node_state_and_are_recorded() {
    let fx = fixture().await;
    grant(&fx, 0).await;
    grant(&fx, 1).await;
    // Enrolled: inspect ramdisk, with the URL, MAC and a token on the kernel command line.
    let (status, script) = get(&fx.router, &format!("/boot/{}.ipxe", node_mac(0))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script.contains("kernel http://10.9.0.1:8080/boot/assets/vmlinuz initrd=initramfs.img"),
        "{script}"
    );
    assert!(
        script.contains("kiln.url=http://10.9.0.1:8080 "),
        "{script}"
    );
    assert!(
        script.contains(&format!("kiln.mac={}", node_mac(0))),
        "{script}"
    );
    assert!(script.contains("kiln.mode=inspect"), "{script}");
    assert!(script.contains("initrd http://10.9.0.1:8080/boot/assets/initramfs.img\nboot\n"));
    assert_eq!(token_of(&script).len(), 48);

    fx.db.move_node(1, NodeState::Imaging).await;
    let (_, script) = get(&fx.router, &format!("/boot/{}.ipxe", node_mac(1))).await;
    assert!(script.contains("kiln.mode=image"), "{script}");

    fx.db.move_node(2, NodeState::Booting).await;
    let (_, script) = get(&fx.router, &format!("/boot/{}.ipxe", node_mac(2))).await;
    assert!(script.contains("exit 1\n"), "{script}");
    assert!(
        script.contains("sanboot --no-describe --drive 0x80"),
        "{script}"
    );
    assert!(!script.contains("kiln.token"), "{script}");

    for (n, expected) in [
        (0, "node SN0 is enrolled: kiln ramdisk (inspect)"),
        (2, "node SN2 is booting: boot from local disk"),
    ] {
        let node = fx
            .db
            .store
            .node_by_serial(&format!("SN{n}"))
            .await
            .expect("node");
        let events = fx.db.store.node_events(node.id).await.expect("events");
        let last = events.last().expect("an event");
        assert_eq!(last.actor, "boot");
        assert_eq!(last.reason, format!("served iPXE script: {expected}"));
        assert_eq!(last.to_state, None);
    }
}

#[tokio::test]
async fn unknown_macs_get_the_discovery_ramdisk() {
    let fx = fixture().await;
    let stranger: MacAddr = "02:00:00:00:99:01".parse().expect("mac");
    // Dashes are accepted too (iPXE's ${mac:hexhyp}).
    let (status, script) = get(&fx.router, "/boot/02-00-00-00-99-01.ipxe").await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.contains("kiln.mode=discovery"), "{script}");
    let machines = fx.db.store.discovered_machines().await.expect("list");
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].mac, stranger);
    assert_eq!(machines[0].reported_at, None);

    let token = token_of(&script);
    assert_eq!(
        report(&fx.router, stranger, Some(&token), "booted").await,
        StatusCode::OK
    );
    let machines = fx.db.store.discovered_machines().await.expect("list");
    assert_eq!(machines[0].reported_at, Some(fx.db.store.now()));
}

#[tokio::test]
async fn reports_need_the_live_token_from_its_address() {
    let fx = fixture().await;
    let mac = node_mac(0);
    grant(&fx, 0).await;
    let (_, first) = get(&fx.router, &format!("/boot/{mac}.ipxe")).await;
    let token = token_of(&first);
    assert_eq!(
        report(&fx.router, mac, None, "booted").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        report(&fx.router, node_mac(1), Some(&token), "booted").await,
        StatusCode::UNAUTHORIZED
    );
    // Stolen: the right token from another address.
    assert_eq!(
        report_from(&fx.router, mac, &token, "127.0.0.2:40000").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        report(&fx.router, mac, Some(&token), "booted kernel=6.1\n").await,
        StatusCode::OK
    );
    assert_eq!(
        last_event(&fx, 0).await,
        "ramdisk reported: booted kernel=6.1"
    );
    // The next boot's grant revokes this boot's token.
    grant(&fx, 0).await;
    assert_eq!(
        report(&fx.router, mac, Some(&token), "booted").await,
        StatusCode::UNAUTHORIZED
    );
    // Tokens expire.
    let (_, second) = get(&fx.router, &format!("/boot/{mac}.ipxe")).await;
    let second = token_of(&second);
    fx.db.clock.advance(chrono::Duration::hours(7));
    assert_eq!(
        report(&fx.router, mac, Some(&second), "booted").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_go_only_to_the_boot_kiln_asked_for_once() {
    let fx = fixture().await;
    let mac = node_mac(0);
    // No boot asked: no token, and the fetch is in the node's history.
    let (status, script) = get(&fx.router, &format!("/boot/{mac}.ipxe")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!script.contains("kiln.token"), "{script}");
    assert!(script.contains("exit 1"), "{script}");
    assert!(
        last_event(&fx, 0)
            .await
            .contains("kiln asked for no network boot"),
        "{}",
        last_event(&fx, 0).await
    );
    // Asked: the first fetch gets the token, a second one gets nothing and is a possible spoof.
    grant(&fx, 0).await;
    let (_, first) = get(&fx.router, &format!("/boot/{mac}.ipxe")).await;
    assert_eq!(token_of(&first).len(), 48);
    let second = get_from(&fx.router, &format!("/boot/{mac}.ipxe"), "127.0.0.9:1").await;
    assert!(!second.contains("kiln.token"), "{second}");
    let event = last_event(&fx, 0).await;
    assert!(
        event.contains("possible spoof: a second script fetch"),
        "{event}"
    );
    assert!(event.contains("127.0.0.9"), "{event}");
    // The window closes with the engine's wait for the boot.
    grant(&fx, 1).await;
    fx.db.clock.advance(chrono::Duration::minutes(16));
    let (_, late) = get(&fx.router, &format!("/boot/{}.ipxe", node_mac(1))).await;
    assert!(!late.contains("kiln.token"), "{late}");
    assert!(last_event(&fx, 1).await.contains("window ended"));
}

#[tokio::test]
async fn a_fetch_from_another_address_than_the_dhcp_lease_gets_no_token() {
    let fx = fixture().await;
    let mac = node_mac(2);
    let node = fx.db.store.node_by_serial("SN2").await.expect("node");
    fx.db
        .store
        .bind_dhcp_lease(&NewLease {
            ip: "10.9.0.52".parse().expect("ip"),
            mac,
            node_id: Some(node.id),
            hostname: None,
            pinned: false,
            expires_at: fx.db.store.now() + chrono::Duration::hours(1),
        })
        .await
        .expect("lease");
    grant(&fx, 2).await;
    let spoof = get_from(&fx.router, &format!("/boot/{mac}.ipxe"), "10.9.0.99:1000").await;
    assert!(!spoof.contains("kiln.token"), "{spoof}");
    let event = last_event(&fx, 2).await;
    assert!(event.contains("DHCP leased 10.9.0.52"), "{event}");
    // The spoof did not use up the grant: the leased address still gets the token, bound to it.
    let real = get_from(&fx.router, &format!("/boot/{mac}.ipxe"), "10.9.0.52:1000").await;
    let token = token_of(&real);
    assert_eq!(
        report_from(&fx.router, mac, &token, "10.9.0.52:1001").await,
        StatusCode::OK
    );
    assert_eq!(
        report_from(&fx.router, mac, &token, "10.9.0.99:1001").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn assets_are_served_and_confined() {
    let fx = fixture().await;
    let request = Request::get("/boot/assets/initramfs.img")
        .body(Body::empty())
        .expect("request");
    let (status, body) = call(&fx.router, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        std::fs::read(fx.assets.path().join("initramfs.img")).expect("read")
    );
    assert_eq!(
        get(&fx.router, "/boot/assets/missing").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&fx.router, "/boot/assets/..%2F..%2Fetc%2Fpasswd")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&fx.router, "/boot/not-a-mac.ipxe").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&fx.router, "/boot/whatever.txt").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn curl_fetches_a_script_from_a_served_router() {
    let fx = fixture().await;
    grant(&fx, 0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        axum::serve(
            listener,
            fx.router
                .clone()
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .into_future(),
    );
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--fail", "--max-time", "20"])
        .arg(format!("http://{addr}/boot/{}.ipxe", node_mac(0)))
        .output()
        .await
        .expect("curl is installed");
    server.abort();
    assert!(output.status.success(), "curl failed: {:?}", output.status);
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(script.contains("kiln.mode=inspect"), "{script}");
}
