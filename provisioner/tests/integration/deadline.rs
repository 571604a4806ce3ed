//! Handler deadlines: a burn-in whose SSH call never returns ends at the state's deadline, the node fails with
//! the deadline's reason through remediation, and its claim is released instead of being renewed for ever.

use std::sync::Arc;
use std::time::Duration;

use kiln_health::SkuCatalog;
use kiln_health::nccl::NcclRun;
use kiln_inventory::{NodeEvent, NodeState};
use kiln_provisioner::lifecycle::access::{BurnInReply, ToolReply};
use kiln_provisioner::lifecycle::{
    AccessError, Ctx, Engine, EngineConfig, NodeAccess, NodeHost, PostImageFacts,
};
use tokio_util::sync::CancellationToken;

use crate::lifecycle_support::{FakeAccess, Faults, Hall};

/// The hall's node access, except that every burn-in hangs for ever (an SSH call that never answers).
struct HungBurnIn(FakeAccess);

#[async_trait::async_trait]
impl NodeAccess for HungBurnIn {
    async fn post_image_check(&self, host: &NodeHost) -> Result<PostImageFacts, AccessError> {
        self.0.post_image_check(host).await
    }
    async fn burn_in_evidence(
        &self,
        _host: &NodeHost,
        _duration: Duration,
        _sku: &str,
        _stress: &[String],
    ) -> Result<BurnInReply, AccessError> {
        std::future::pending().await
    }
    async fn nccl(&self, hosts: &[NodeHost]) -> Result<NcclRun, AccessError> {
        self.0.nccl(hosts).await
    }
    async fn run_tool(
        &self,
        host: &NodeHost,
        command: &str,
        timeout: Duration,
    ) -> Result<ToolReply, AccessError> {
        self.0.run_tool(host, command, timeout).await
    }
}

/// A one-node hall whose engine has a short handler deadline and burn-in, and that engine over a hanging
/// burn-in.
async fn hall_with_hung_burn_in(tweak: impl FnOnce(&mut EngineConfig)) -> (Hall, Engine) {
    let hall = Hall::with_config(1, 1, Faults::default(), |config| {
        config.handler_deadline = Duration::from_millis(300);
        config.burn_in = Duration::from_millis(100);
        config.node_tools = Duration::ZERO;
        tweak(config);
    })
    .await;
    let ctx = Ctx::new(
        hall.store.clone(),
        hall.engine.ctx().config.as_ref().clone(),
        Arc::new(hall.bmcs.clone()),
        Arc::new(HungBurnIn(hall.access.clone())),
        Arc::new(SkuCatalog::builtin().expect("skus")),
    );
    (hall, Engine::new(ctx))
}

/// One round of `engine`, which must end well before any test timeout: a hung handler may not hold it.
async fn round(hall: &Hall, engine: &Engine) {
    tokio::time::timeout(Duration::from_secs(20), engine.run_once(10))
        .await
        .expect("a round with a hung burn-in ends at the handler deadline")
        .expect("round");
    hall.play().await;
    hall.clock.advance(chrono::Duration::seconds(1));
}

/// Rounds until the node is in burn_in.
async fn drive_to_burn_in(hall: &Hall, engine: &Engine) {
    for _ in 0..200 {
        if hall.state_of("SN0").await == NodeState::BurnIn {
            return;
        }
        round(hall, engine).await;
    }
    panic!(
        "SN0 never reached burn_in: {:?}",
        hall.state_of("SN0").await
    );
}

fn deadline_event(events: &[NodeEvent]) -> Option<&NodeEvent> {
    events.iter().find(|e| {
        e.from_state == Some(NodeState::BurnIn) && e.reason.contains("exceeded its deadline")
    })
}

#[tokio::test]
async fn hung_burn_in_fails_at_its_deadline_and_releases_the_claim() {
    let (hall, engine) = hall_with_hung_burn_in(|_| {}).await;
    assert_eq!(
        engine.ctx().config.deadline_of(NodeState::BurnIn),
        Duration::from_millis(400),
        "burn_in's deadline is the handler deadline plus the burn-in"
    );
    drive_to_burn_in(&hall, &engine).await;

    let started = std::time::Instant::now();
    round(&hall, &engine).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "the run lasted its deadline: {took:?}"
    );

    let node = hall.store.node_by_serial("SN0").await.expect("node");
    assert_eq!(node.state, NodeState::Remediating);
    assert_eq!(node.claimed_by, None, "the hung run's claim is released");
    let events = hall.store.node_events(node.id).await.expect("events");
    let event = deadline_event(&events).expect("a burn_in → remediating event with the deadline");
    assert_eq!(event.to_state, Some(NodeState::Remediating));
    assert!(
        event
            .reason
            .contains("handler for state burn_in exceeded its deadline of 0.4 s"),
        "{}",
        event.reason
    );
    let work: serde_json::Value = serde_json::from_str(
        &hall
            .store
            .node_work(node.id)
            .await
            .expect("work")
            .work
            .expect("a work record"),
    )
    .expect("work json");
    assert_eq!(
        work["failure"]["failure"]["class"], "handler_deadline",
        "{work}"
    );
    assert_eq!(work["failure"]["state"], "burn_in", "{work}");

    // Someone else may take the node at once: nothing holds it.
    let claims = hall
        .store
        .claim_due_nodes("other-engine", 10, chrono::Duration::seconds(60))
        .await
        .expect("claim");
    assert_eq!(
        claims.iter().map(|c| c.node.id).collect::<Vec<_>>(),
        vec![node.id],
        "the node is due and unclaimed after the deadline"
    );
    hall.store
        .release_claim("other-engine", node.id, Some(hall.store.now()))
        .await
        .expect("release");

    // Remediation takes over: the node is retried or quarantined, never left hanging in burn_in.
    for _ in 0..20 {
        round(&hall, &engine).await;
        if hall.state_of("SN0").await == NodeState::Quarantined {
            break;
        }
    }
    let node = hall.store.node_by_serial("SN0").await.expect("node");
    assert_eq!(
        node.state,
        NodeState::Quarantined,
        "every hung retry fails again"
    );
    assert_eq!(node.claimed_by, None);
    let events = hall.store.node_events(node.id).await.expect("events");
    let last = events.last().expect("events");
    assert!(
        last.reason
            .contains("handler for state burn_in exceeded its deadline"),
        "the quarantine names the deadline: {}",
        last.reason
    );
}

#[tokio::test]
async fn running_engine_stops_renewing_a_hung_handler() {
    // Claims live 300 ms and are renewed every 100 ms while the handler runs; the burn-in hangs past many
    // renewals, until its 1.1 s deadline.
    let (hall, engine) = hall_with_hung_burn_in(|config| {
        config.handler_deadline = Duration::from_secs(1);
        config.claim_ttl = Duration::from_millis(300);
        config.poll = Duration::from_millis(20);
        config.workers = 4;
    })
    .await;
    drive_to_burn_in(&hall, &engine).await;
    let id = hall.store.node_by_serial("SN0").await.expect("node").id;

    let cancel = CancellationToken::new();
    let running = tokio::spawn({
        let engine = engine.clone();
        let cancel = cancel.clone();
        async move { engine.run(cancel).await }
    });
    let mut left = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let events = hall.store.node_events(id).await.expect("events");
        if let Some(event) = deadline_event(&events) {
            left = Some(event.clone());
            break;
        }
    }
    cancel.cancel();
    running.await.expect("engine stops");
    let event = left.expect("the running engine failed the hung burn-in within 10 s");
    assert_eq!(event.to_state, Some(NodeState::Remediating));
    assert!(
        event.reason.contains("deadline of 1.1 s"),
        "{}",
        event.reason
    );
}
