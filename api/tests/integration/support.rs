//! A seeded server: hall H1 (4 available nodes) leased to lessee `acme`, hall H2 (one available, one enrolled),
//! lessee `globex` with no lease, and a token for every role.

use std::net::SocketAddr;

use kiln_api::ApiState;
use kiln_inventory::{
    AcceptanceRule, ManifestFormat, NodeState, Role, SecretKey, Store, StoreOptions, parse_manifest,
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
        for i in 0..2 {
            csv.push_str(&format!("H2,R2,{i},B-{i},h100-sxm-80gb,10.0.2.{i},ipmi,admin,{PASSWORD},02:00:00:00:02:{i:02x}\n"));
        }
        let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("manifest");
        store
            .import_manifest(&rows, "site", "seed")
            .await
            .expect("import");
        for serial in ["A-0", "A-1", "A-2", "A-3", "B-0"] {
            make_available(&store, serial).await;
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
        let state = ApiState::new(store.clone());
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
