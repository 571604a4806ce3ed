//! API token lifetimes and listing: an expiring token stops authenticating at its expiry, on both backends;
//! the list shows live tokens by default, every token with `include_dead`, and never a token or its hash.

use std::time::Duration;

use kiln_inventory::{Clock, Role, StoreError};

use crate::both_backends;
use crate::support::TestDb;

both_backends!(expiring_tokens_and_the_list);
both_backends!(last_use_is_kept_to_the_minute);

async fn expiring_tokens_and_the_list(db: TestDb) {
    let (forever, forever_id) = db
        .store
        .create_api_token(Role::Technician, None, Some("tech"))
        .await
        .expect("token");
    let (brief, brief_id) = db
        .store
        .create_expiring_api_token(
            Role::Pipeline,
            None,
            Some("ci"),
            Some(Duration::from_secs(3600)),
        )
        .await
        .expect("expiring token");
    let (revoked, revoked_id) = db
        .store
        .create_api_token(Role::Admin, None, None)
        .await
        .expect("token");
    assert!(db.store.revoke_api_token(revoked_id).await.expect("revoke"));
    assert!(
        db.store
            .authenticate(brief.expose())
            .await
            .expect("auth")
            .is_some()
    );
    let live = db.store.list_api_tokens(false).await.expect("list");
    let ids: Vec<i64> = live.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![forever_id, brief_id]);
    let expiry = live[1].expires_at.expect("expires");
    assert_eq!(expiry - live[1].created_at, chrono::Duration::hours(1));
    assert_eq!(live[0].expires_at, None);
    assert_eq!(live[1].status, "live");

    // A second before the hour the token works; at the hour it does not, and the list says why.
    db.clock.advance(chrono::Duration::seconds(3599));
    assert!(
        db.store
            .authenticate(brief.expose())
            .await
            .expect("auth")
            .is_some()
    );
    db.clock.advance(chrono::Duration::seconds(1));
    assert!(
        db.store
            .authenticate(brief.expose())
            .await
            .expect("auth")
            .is_none()
    );
    assert!(
        db.store
            .authenticate(forever.expose())
            .await
            .expect("auth")
            .is_some()
    );
    assert!(
        db.store
            .authenticate(revoked.expose())
            .await
            .expect("auth")
            .is_none()
    );
    let live = db.store.list_api_tokens(false).await.expect("list");
    assert_eq!(
        live.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![forever_id]
    );
    let all = db.store.list_api_tokens(true).await.expect("list all");
    let statuses: Vec<(i64, &str)> = all.iter().map(|t| (t.id, t.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (forever_id, "live"),
            (brief_id, "expired"),
            (revoked_id, "revoked")
        ]
    );
    assert!(all[2].revoked_at.is_some());
    let listed = serde_json::to_string(&all).expect("json");
    for secret in [&forever, &brief, &revoked] {
        assert!(!listed.contains(secret.expose()));
        assert!(!listed.contains(&hex_sha256(secret.expose())));
    }

    match db
        .store
        .create_expiring_api_token(Role::Admin, None, None, Some(Duration::ZERO))
        .await
    {
        Err(StoreError::Invalid(msg)) => assert!(msg.contains("longer than zero"), "{msg}"),
        other => panic!("a zero lifetime must be refused, got {other:?}"),
    }
    match db
        .store
        .create_expiring_api_token(Role::Admin, None, None, Some(Duration::MAX))
        .await
    {
        Err(StoreError::Invalid(msg)) => assert!(msg.contains("too long"), "{msg}"),
        other => panic!("an unrepresentable lifetime must be refused, got {other:?}"),
    }
}

async fn last_use_is_kept_to_the_minute(db: TestDb) {
    let (token, id) = db
        .store
        .create_api_token(Role::Technician, None, None)
        .await
        .expect("token");
    let last_used = |tokens: Vec<kiln_inventory::TokenInfo>| {
        tokens
            .into_iter()
            .find(|t| t.id == id)
            .expect("listed")
            .last_used_at
    };
    assert_eq!(
        last_used(db.store.list_api_tokens(false).await.expect("list")),
        None
    );
    let first = db.clock.now();
    db.store
        .authenticate(token.expose())
        .await
        .expect("auth")
        .expect("live");
    assert_eq!(
        last_used(db.store.list_api_tokens(false).await.expect("list")),
        Some(first)
    );
    // Within the minute the stored time stays put (authenticating stays a read); past it, it moves.
    db.clock.advance(chrono::Duration::seconds(59));
    db.store
        .authenticate(token.expose())
        .await
        .expect("auth")
        .expect("live");
    assert_eq!(
        last_used(db.store.list_api_tokens(false).await.expect("list")),
        Some(first)
    );
    db.clock.advance(chrono::Duration::seconds(1));
    let later = db.clock.now();
    db.store
        .authenticate(token.expose())
        .await
        .expect("auth")
        .expect("live");
    assert_eq!(
        last_used(db.store.list_api_tokens(false).await.expect("list")),
        Some(later)
    );
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
