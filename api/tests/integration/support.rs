//! A seeded server: hall H1 (4 available nodes, 8 GPUs and an NCCL run each) leased to lessee `acme`, hall H2
//! (B-0 available, its BMC a simulated one over plain HTTP; B-1 enrolled, its BMC dead), lessee `globex` with
//! no lease, a site signing key, and a token for every role.

use std::net::SocketAddr;

use kiln_api::ApiState;
use kiln_bmc_sim::{SimFleet, SimFleetConfig, Timing};
use kiln_inventory::{
    AcceptanceRule, Gpu, Hardware, ManifestFormat, NewHealthRun, NodeState, Role, SecretKey, Store,
    StoreOptions, parse_manifest,
};

pub const PASSWORD: &str = "bmc-Secr3t-value";

pub struct Server {
    pub addr: SocketAddr,
    /// Kept for tests that inspect the inventory directly.
    #[allow(dead_code)]
    pub store: Store,
    pub tokens: Tokens,
    pub lease_id: i64,
    pub h2_id: i64,
    pub client: reqwest::Client,
    /// The simulated BMC behind B-0.
    #[allow(dead_code)]
    pub fleet: SimFleet,
    /// The site's signing public key.
    #[allow(dead_code)]
    pub signing_public: ed25519_dalek::VerifyingKey,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub struct Tokens {
    pub admin: String,
    pub technician: String,
    pub pipeline: String,
    pub acme: String,
    pub globex: String,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        let store = Store::open(StoreOptions::new(url).key(Some(SecretKey::generate())))
            .await
            .expect("store");
        let mut csv = String::from(
            "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
        );
        for i in 0..4 {
            csv.push_str(&format!("H1,R1,{i},A-{i},h100-sxm-80gb,10.0.1.{i},redfish,admin,{PASSWORD},02:00:00:00:01:{i:02x}\n"));
        }
        let fleet = SimFleet::start(SimFleetConfig {
            count: 1,
            tls: false,
            password: PASSWORD.into(),
            ipmi_count: Some(0),
            timing: Timing {
                power_on: std::time::Duration::ZERO,
                ..Timing::default()
            },
            ..SimFleetConfig::default()
        })
        .await
        .expect("fleet");
        // Port 1 on loopback refuses connections: a dead BMC.
        let bmcs = [
            fleet.endpoints()[0].redfish_url.as_str(),
            "http://127.0.0.1:1",
        ];
        for (i, bmc) in bmcs.iter().enumerate() {
            csv.push_str(&format!("H2,R2,{i},B-{i},h100-sxm-80gb,{bmc},redfish,admin,{PASSWORD},02:00:00:00:02:{i:02x}\n"));
        }
        let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("manifest");
        store
            .import_manifest(&rows, "site", "seed")
            .await
            .expect("import");
        for serial in ["A-0", "A-1", "A-2", "A-3", "B-0"] {
            make_available(&store, serial).await;
        }
        for (i, serial) in ["A-0", "A-1", "A-2", "A-3"].iter().enumerate() {
            seed_evidence(&store, serial, 360.0 + 10.0 * i as f64).await;
        }
        let acme = store.upsert_lessee("acme", None).await.expect("acme");
        store.upsert_lessee("globex", None).await.expect("globex");
        let h1 = store.hall_by_name("H1").await.expect("H1");
        let h2_id = store.hall_by_name("H2").await.expect("H2").id;
        let outcome = store
            .lease_hall(
                h1.id,
                acme.id,
                store.now(),
                None,
                AcceptanceRule::AllNodes,
                "seed",
            )
            .await
            .expect("lease H1");
        let token = |role, lessee: Option<&'static str>| {
            let store = store.clone();
            async move {
                store
                    .create_api_token(role, lessee, None)
                    .await
                    .expect("token")
                    .0
                    .expose()
                    .to_string()
            }
        };
        let tokens = Tokens {
            admin: token(Role::Admin, None).await,
            technician: token(Role::Technician, None).await,
            pipeline: token(Role::Pipeline, None).await,
            acme: token(Role::Lessee, Some("acme")).await,
            globex: token(Role::Lessee, Some("globex")).await,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let signing = kiln_health::evidence::generate_signing_key();
        let signing_public = signing.verifying_key();
        let state = ApiState::new(store.clone()).with_signing_key(signing);
        tokio::spawn(kiln_api::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            store,
            tokens,
            lease_id: outcome.lease.id,
            h2_id,
            client: kiln_images::http_client(),
            fleet,
            signing_public,
            _dir: dir,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request with an optional token and JSON body; returns status and body (JSON or text).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }
}

async fn make_available(store: &Store, serial: &str) {
    use NodeState::*;
    let node = store.node_by_serial(serial).await.expect("node");
    for step in [
        Enrolled,
        Discovering,
        Inspecting,
        Imaging,
        Booting,
        BurnIn,
        FabricTest,
        Available,
    ]
    .windows(2)
    {
        store
            .transition(node.id, step[0], step[1], "seed", "walk")
            .await
            .expect("walk");
    }
}

/// Eight GPUs and one passing NCCL run (a kiln-health verdict, as `kiln health nccl --record` stores it).
async fn seed_evidence(store: &Store, serial: &str, busbw_gbps: f64) {
    let node = store.node_by_serial(serial).await.expect("node");
    let gpus = (0..8)
        .map(|index| Gpu {
            index,
            model: "NVIDIA H100 80GB HBM3".into(),
            uuid: Some(format!("GPU-{serial}-{index}")),
            serial: None,
            pci_bus_id: None,
            memory_mib: Some(81559),
            vbios: Some("96.00.99.00.01".into()),
        })
        .collect();
    let hardware = Hardware {
        gpus,
        ..Hardware::default()
    };
    store
        .replace_hardware(node.id, &hardware)
        .await
        .expect("hardware");
    let verdict = serde_json::json!({
        "kind": "nccl", "sku": "h100-sxm-80gb", "started_at_unix_s": 1_790_000_000u64,
        "checks": [{"name": "nccl.busbw", "subject": "run", "status": "pass", "measured": busbw_gbps,
                    "threshold": {"min_busbw_gbps": 300.0}, "reason": "mean busbw at large messages meets the floor"}],
        "evidence": {"avg_busbw_gbps": busbw_gbps, "hosts": [serial]},
    });
    store
        .record_health_run(&NewHealthRun {
            node: node.id,
            kind: "nccl",
            passed: true,
            started_at: store.now(),
            finished_at: Some(store.now()),
            evidence: &verdict,
        })
        .await
        .expect("health run");
}
