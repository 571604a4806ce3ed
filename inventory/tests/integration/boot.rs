//! Network boot records: DHCP leases (exclusive per address, stable per MAC, surviving a reopen), declined
//! addresses, discovered machines and boot tokens.

use std::net::Ipv4Addr;

use chrono::Duration;
use kiln_inventory::{
    BootSighting, GrantClaim, LeaseState, LeaseWrite, MacAddr, NewLease, Store, StoreOptions,
    TokenCheck, TokenOwner,
};

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(
    leases_are_exclusive_and_stable,
    leases_survive_reopen,
    discovered_machines_are_counted,
    boot_tokens_match_only_the_latest
);

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, last])
}

fn lease(db: &TestDb, ip: Ipv4Addr, mac: MacAddr) -> NewLease<'static> {
    NewLease {
        ip,
        mac,
        node_id: None,
        hostname: Some("pxe"),
        pinned: false,
        expires_at: db.store.now() + Duration::hours(1),
    }
}

async fn leases_are_exclusive_and_stable(db: TestDb) {
    let a = Ipv4Addr::new(10, 9, 0, 10);
    let b = Ipv4Addr::new(10, 9, 0, 11);
    assert_eq!(
        db.store
            .bind_dhcp_lease(&lease(&db, a, mac(1)))
            .await
            .expect("bind"),
        LeaseWrite::Written
    );
    // Another MAC cannot take a held address.
    assert_eq!(
        db.store
            .bind_dhcp_lease(&lease(&db, a, mac(2)))
            .await
            .expect("bind"),
        LeaseWrite::AddressTaken { by: Some(mac(1)) }
    );
    // Moving a MAC to another address frees the old one.
    assert_eq!(
        db.store
            .bind_dhcp_lease(&lease(&db, b, mac(1)))
            .await
            .expect("bind"),
        LeaseWrite::Written
    );
    let leases = db.store.dhcp_leases().await.expect("list");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].ip, b);
    assert_eq!(leases[0].hostname.as_deref(), Some("pxe"));
    // Released: still the MAC's row (so it gets the same address back), but free for others.
    assert!(
        db.store
            .release_dhcp_lease(mac(1), b)
            .await
            .expect("release")
    );
    assert!(
        !db.store
            .release_dhcp_lease(mac(1), b)
            .await
            .expect("release again")
    );
    let released = db
        .store
        .dhcp_lease_for_mac(mac(1))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(released.state, LeaseState::Released);
    assert!(!released.holds_address(db.store.now()));
    // An expired lease can be taken over.
    db.clock.advance(Duration::hours(2));
    assert_eq!(
        db.store
            .bind_dhcp_lease(&lease(&db, b, mac(3)))
            .await
            .expect("bind"),
        LeaseWrite::Written
    );
    assert_eq!(
        db.store.dhcp_lease_for_mac(mac(1)).await.expect("get"),
        None
    );
    // A declined address is refused to everyone until it expires.
    let until = db.store.now() + Duration::minutes(10);
    db.store
        .decline_dhcp_address(b, until)
        .await
        .expect("decline");
    assert_eq!(
        db.store
            .bind_dhcp_lease(&lease(&db, b, mac(3)))
            .await
            .expect("bind"),
        LeaseWrite::AddressTaken { by: None }
    );
    db.clock.advance(Duration::minutes(11));
    assert_eq!(
        db.store
            .bind_dhcp_lease(&lease(&db, b, mac(3)))
            .await
            .expect("bind"),
        LeaseWrite::Written
    );
}

async fn leases_survive_reopen(db: TestDb) {
    db.import_csv(&csv_rows(1, 1)).await.expect("import");
    let node = db
        .store
        .node_by_boot_mac("02:00:00:00:01:00".parse().expect("mac"))
        .await
        .expect("lookup")
        .expect("node");
    let ip = Ipv4Addr::new(10, 9, 0, 20);
    let pinned = NewLease {
        ip,
        mac: node.boot_mac,
        node_id: Some(node.id),
        hostname: None,
        pinned: true,
        expires_at: db.store.now(),
    };
    assert_eq!(
        db.store.bind_dhcp_lease(&pinned).await.expect("bind"),
        LeaseWrite::Written
    );
    db.store.close().await;
    let reopened = Store::open(StoreOptions::new(db.url.clone()).clock(db.clock.clone()))
        .await
        .expect("reopen");
    let leases = reopened.dhcp_leases().await.expect("list");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].node_id, Some(node.id));
    assert!(leases[0].pinned);
    // Pinned: held even though its expiry time has passed.
    db.clock.advance(Duration::days(3));
    assert!(leases[0].holds_address(reopened.now()));
    assert_eq!(
        reopened
            .bind_dhcp_lease(&lease(&db, ip, mac(9)))
            .await
            .expect("bind"),
        LeaseWrite::AddressTaken {
            by: Some(node.boot_mac)
        }
    );
    reopened.close().await;
}

async fn discovered_machines_are_counted(db: TestDb) {
    let first = BootSighting {
        ip: None,
        client_arch: Some("x86_64-efi"),
        vendor_class: Some("PXEClient:Arch:00007:UNDI:003000"),
    };
    db.store
        .record_boot_sighting(mac(5), &first)
        .await
        .expect("record");
    db.clock.advance(Duration::seconds(30));
    let second = BootSighting {
        ip: Some(Ipv4Addr::new(10, 9, 0, 50)),
        ..BootSighting::default()
    };
    db.store
        .record_boot_sighting(mac(5), &second)
        .await
        .expect("record");
    db.store
        .record_boot_sighting(mac(6), &second)
        .await
        .expect("record");
    db.store
        .mark_discovered_reported(mac(5))
        .await
        .expect("mark");
    let machines = db.store.discovered_machines().await.expect("list");
    assert_eq!(machines.len(), 2);
    let five = machines.iter().find(|m| m.mac == mac(5)).expect("mac 5");
    assert_eq!(five.seen_count, 2);
    assert_eq!(five.client_arch.as_deref(), Some("x86_64-efi"));
    assert_eq!(five.last_ip, Some(Ipv4Addr::new(10, 9, 0, 50)));
    assert_eq!(
        five.last_seen_at - five.first_seen_at,
        Duration::seconds(30)
    );
    assert_eq!(five.reported_at, Some(db.store.now()));
    let six = machines.iter().find(|m| m.mac == mac(6)).expect("mac 6");
    assert_eq!(six.seen_count, 1);
    assert_eq!(six.reported_at, None);
}

async fn boot_tokens_match_only_the_latest(db: TestDb) {
    db.import_csv(&csv_rows(1, 1)).await.expect("import");
    let node = db.store.node_by_serial("SN1-0").await.expect("node");
    let here: std::net::IpAddr = "10.0.0.5".parse().expect("ip");
    let ttl = std::time::Duration::from_secs(3600);
    let window = std::time::Duration::from_secs(600);
    let claim = |at| {
        let store = db.store.clone();
        async move {
            store
                .open_boot_grant(node.id, at, window)
                .await
                .expect("grant");
            match store
                .claim_boot_grant(node.id, node.boot_mac, here, ttl)
                .await
                .expect("claim")
            {
                GrantClaim::Issued { token } => token,
                other => panic!("no token: {other:?}"),
            }
        }
    };
    let old = claim(db.store.now()).await;
    // One token per grant: a second fetch is refused and names where the token went.
    match db
        .store
        .claim_boot_grant(node.id, node.boot_mac, here, ttl)
        .await
        .expect("claim")
    {
        GrantClaim::AlreadyIssued { to, .. } => assert_eq!(to, "10.0.0.5"),
        other => panic!("second claim: {other:?}"),
    }
    let new = claim(db.store.now()).await;
    assert_ne!(old, new);
    assert_eq!(new.len(), 48);
    let check = |mac, token: String, ip: &str| {
        let store = db.store.clone();
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        async move {
            store
                .check_boot_token(mac, &token, ip)
                .await
                .expect("check")
        }
    };
    assert_eq!(
        check(node.boot_mac, old.clone(), "10.0.0.5").await,
        TokenCheck::Wrong
    );
    assert_eq!(
        check(node.boot_mac, new.clone(), "10.0.0.5").await,
        TokenCheck::Valid(TokenOwner::Node(node.id))
    );
    assert_eq!(
        check(node.boot_mac, new.clone(), "10.0.0.6").await,
        TokenCheck::WrongAddress {
            bound: "10.0.0.5".into()
        }
    );
    assert_eq!(
        check(mac(7), new.clone(), "10.0.0.5").await,
        TokenCheck::Wrong
    );
    // At rest only the hash: the token itself is nowhere in the SQLite file or its WAL, its hash is.
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).expect("db file");
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!contains(&new), "plaintext boot token on disk");
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(new.as_bytes()));
        assert!(contains(&hash), "the token's hash is what is stored");
    }
    let stranger = db
        .store
        .issue_discovery_token(mac(7), here, ttl)
        .await
        .expect("issue");
    assert_eq!(
        check(mac(7), stranger, "10.0.0.5").await,
        TokenCheck::Valid(TokenOwner::Unenrolled)
    );
}
