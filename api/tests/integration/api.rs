//! API behaviour: leasing flow, pagination, error bodies, OpenAPI document, metrics, no credentials leaked.

use serde_json::json;

use crate::support::{PASSWORD, Server};

#[tokio::test]
async fn lease_report_release_flow() {
    let server = Server::start().await;
    let admin = Some(server.tokens.admin.as_str());
    let h2 = server.h2_id;
    let (status, refused) = server
        .call(
            "POST",
            &format!("/api/v1/halls/{h2}/lease"),
            admin,
            Some(json!({"lessee": "globex"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(refused["error"], "acceptance_rule_not_met");
    assert_eq!(refused["detail"]["shortfall"], json!(["B-1 (enrolled)"]));
    assert_eq!(refused["detail"]["required"], 2);

    let body = json!({"lessee": "globex", "acceptance": {"rule": "min_verified_fraction", "fraction": 0.5}});
    let (status, leased) = server
        .call(
            "POST",
            &format!("/api/v1/halls/{h2}/lease"),
            admin,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{leased}");
    assert_eq!(
        (
            leased["nodes_leased"].as_i64(),
            leased["nodes_owed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let lease_id = leased["lease"]["id"].as_i64().expect("id");
    let (status, again) = server
        .call(
            "POST",
            &format!("/api/v1/halls/{h2}/lease"),
            admin,
            Some(body),
        )
        .await;
    assert_eq!((status, again["error"].as_str()), (409, Some("conflict")));

    let (status, report) = server
        .call(
            "GET",
            &format!("/api/v1/leases/{lease_id}/report"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["hall"], "H2");
    assert_eq!(report["aggregates"]["nodes_leased"], 1);
    assert_eq!(report["aggregates"]["nodes_owed"], 1);
    assert_eq!(report["nodes"][0]["serial"], "B-0");

    let (status, released) = server
        .call(
            "POST",
            &format!("/api/v1/leases/{lease_id}/release"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["nodes_wiping"], 1);
    assert_eq!(released["lease"]["status"], "released");
    let (_, node) = server.call("GET", "/api/v1/nodes/B-0", admin, None).await;
    assert_eq!(node["node"]["state"], "wiping");
    let (_, detail) = server
        .call("GET", &format!("/api/v1/leases/{lease_id}"), admin, None)
        .await;
    let kinds: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["leased", "released"]);
}

#[tokio::test]
async fn pagination_and_filters() {
    let server = Server::start().await;
    let admin = Some(server.tokens.admin.as_str());
    let mut seen = Vec::new();
    let mut path = "/api/v1/nodes?limit=4".to_string();
    loop {
        let (status, page) = server.call("GET", &path, admin, None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .filter_map(|n| n["serial"].as_str().map(String::from)),
        );
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/v1/nodes?limit=4&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["A-0", "A-1", "A-2", "A-3", "B-0", "B-1"]);
    let (_, enrolled) = server
        .call("GET", "/api/v1/nodes?state=enrolled", admin, None)
        .await;
    assert_eq!(enrolled["nodes"].as_array().map(Vec::len), Some(1));
    let (status, bad) = server
        .call("GET", "/api/v1/nodes?state=cooking", admin, None)
        .await;
    assert_eq!((status, bad["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = server
        .call("GET", "/api/v1/nodes?limit=0", admin, None)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let server = Server::start().await;
    let admin = server.tokens.admin.as_str();
    let url = server.url("/api/v1/lessees");
    let send = |body: Vec<u8>, content_type: &'static str| {
        server
            .client
            .post(url.clone())
            .bearer_auth(admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: [(Vec<u8>, &str, u16); 5] = [
        (b"{not json".to_vec(), "application/json", 400),
        (br#"{"name": 42}"#.to_vec(), "application/json", 422),
        (
            br#"{"name": "x", "colour": "red"}"#.to_vec(),
            "application/json",
            422,
        ),
        (br#"{"name": "x"}"#.to_vec(), "text/plain", 415),
        (vec![b' '; 5 * 1024 * 1024], "application/json", 413),
    ];
    for (body, content_type, want) in cases {
        let response = send(body, content_type).await.expect("send");
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.expect("json error body");
        assert_eq!(status, want, "{answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    let (status, answer) = server
        .call("GET", "/api/v1/nodes", Some("Basic abc"), None)
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, answer) = server
        .call("GET", "/api/v1/no/such/thing", Some(admin), None)
        .await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn openapi_document_is_complete() {
    let server = Server::start().await;
    let (status, doc) = server.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/nodes",
        "/api/v1/nodes/{serial}",
        "/api/v1/halls/{id}/lease",
        "/api/v1/leases/{id}/report",
        "/api/v1/leases/{id}/progress",
        "/api/v1/nodes/{serial}/power",
        "/api/v1/images",
        "/api/v1/signing-key",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Tenant turnover: a node's erase records and the release's per-node summary are documented.
    assert!(schemas["NodeDetail"]["properties"]["erase_records"].is_object());
    assert!(schemas["LeaseProgress"]["properties"]["turnover"].is_object());
    assert!(schemas.contains_key("EraseRecord"), "EraseRecord schema");
}

#[tokio::test]
async fn metrics_and_no_credentials_anywhere() {
    let server = Server::start().await;
    let admin = Some(server.tokens.admin.as_str());
    let mut bodies = String::new();
    for path in [
        "/api/v1/nodes",
        "/api/v1/nodes/A-0",
        "/api/v1/map",
        "/api/v1/leases/1/report",
        "/api/v1/halls",
    ] {
        let (status, body) = server.call("GET", path, admin, None).await;
        assert_eq!(status, 200, "{path}");
        bodies.push_str(&body.to_string());
    }
    assert!(bodies.contains("10.0.1.0"), "BMC addresses are shown");
    assert!(!bodies.contains(PASSWORD), "a BMC password leaked");
    assert!(!bodies.contains("password"), "no password field at all");

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("kiln_nodes{hall=\"H1\",state=\"leased\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_nodes{hall=\"H2\",state=\"enrolled\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kiln_leases_active 1"), "{metrics}");
    assert!(
        metrics.contains(
            "kiln_http_requests_total{method=\"GET\",route=\"/api/v1/nodes\",status=\"200\"}"
        ),
        "{metrics}"
    );
    let page = server
        .client
        .get(server.url("/"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.expect("html").contains("kiln hall map"));
    // Request ids come back on every answer.
    let response = server
        .client
        .get(server.url("/api/v1/halls"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.headers().get("x-request-id").map(|v| v.len()),
        Some(16)
    );
}
