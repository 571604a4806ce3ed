//! Every endpoint tried with every role; lessees see only their own halls, everything else is 404.

use serde_json::json;

use crate::support::Server;

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Admin,
    Technician,
    Pipeline,
    Acme,
    Globex,
}

const EVERYONE: [Who; 6] = [
    Who::Nobody,
    Who::Admin,
    Who::Technician,
    Who::Pipeline,
    Who::Acme,
    Who::Globex,
];

fn token(server: &Server, who: Who) -> Option<&str> {
    let t = &server.tokens;
    match who {
        Who::Nobody => None,
        Who::Admin => Some(&t.admin),
        Who::Technician => Some(&t.technician),
        Who::Pipeline => Some(&t.pipeline),
        Who::Acme => Some(&t.acme),
        Who::Globex => Some(&t.globex),
    }
}

#[tokio::test]
async fn role_endpoint_matrix() {
    let server = Server::start().await;
    let lease = server.lease_id;
    let h2 = server.h2_id;
    let bad_manifest = json!({"format": "csv", "manifest": "hall,rack\nH9,R9\n"});
    // (method, path, body, expected status for [nobody, admin, technician, pipeline, acme, globex])
    let cases: Vec<(&str, String, Option<serde_json::Value>, [u16; 6])> = vec![
        (
            "GET",
            "/api/v1/nodes".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/v1/nodes/A-0".into(),
            None,
            [401, 200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/api/v1/nodes/B-0".into(),
            None,
            [401, 200, 200, 200, 404, 404],
        ),
        (
            "GET",
            "/api/v1/nodes/A-1/events".into(),
            None,
            [401, 200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/api/v1/nodes/B-1/events".into(),
            None,
            [401, 200, 200, 200, 404, 404],
        ),
        (
            "GET",
            "/api/v1/nodes/A-1/health".into(),
            None,
            [401, 200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/api/v1/nodes/NOPE".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "POST",
            "/api/v1/nodes/B-1/drain".into(),
            Some(json!({"drained": false, "reason": "check"})),
            [401, 200, 200, 403, 404, 404],
        ),
        (
            "POST",
            "/api/v1/nodes/A-2/drain".into(),
            Some(json!({"drained": false, "reason": "check"})),
            [401, 200, 200, 403, 403, 404],
        ),
        (
            "POST",
            "/api/v1/nodes/B-1/repair".into(),
            Some(json!({"reason": "new DIMM"})),
            [401, 409, 409, 403, 404, 404],
        ),
        (
            "POST",
            "/api/v1/nodes/B-0/power".into(),
            Some(json!({"action": "on"})),
            [401, 200, 200, 403, 404, 404],
        ),
        (
            "POST",
            "/api/v1/nodes/NOPE/power".into(),
            Some(json!({"action": "cycle"})),
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "GET",
            "/api/v1/halls".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/halls/{h2}"),
            None,
            [401, 200, 200, 200, 404, 404],
        ),
        (
            "POST",
            format!("/api/v1/halls/{h2}/lease"),
            Some(json!({"lessee": "globex"})),
            [401, 422, 403, 403, 403, 403],
        ),
        (
            "GET",
            "/api/v1/map".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/v1/leases".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/leases/{lease}"),
            None,
            [401, 200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("/api/v1/leases/{lease}/report"),
            None,
            [401, 200, 200, 200, 200, 404],
        ),
        (
            "GET",
            format!("/api/v1/leases/{lease}/progress"),
            None,
            [401, 200, 200, 200, 200, 404],
        ),
        (
            "GET",
            "/api/v1/images".into(),
            None,
            [401, 200, 200, 200, 403, 403],
        ),
        (
            "GET",
            "/api/v1/signing-key".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/v1/leases/999/release".into(),
            None,
            [401, 404, 403, 403, 403, 403],
        ),
        (
            "POST",
            format!("/api/v1/leases/{lease}/swap"),
            Some(json!({"failing": "B-0", "reason": "x"})),
            [401, 400, 400, 403, 403, 403],
        ),
        (
            "POST",
            "/api/v1/racks/import".into(),
            Some(bad_manifest),
            [401, 422, 403, 422, 403, 403],
        ),
        (
            "GET",
            "/api/v1/lessees".into(),
            None,
            [401, 200, 403, 403, 403, 403],
        ),
        (
            "POST",
            "/api/v1/lessees".into(),
            Some(json!({"name": "initech"})),
            [401, 201, 403, 403, 403, 403],
        ),
        (
            "GET",
            "/api/v1/openapi.json".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/metrics".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &cases {
        for (who, want) in EVERYONE.iter().zip(expected) {
            let (status, answer) = server
                .call(method, path, token(&server, *who), body.clone())
                .await;
            if status != *want {
                failures.push(format!(
                    "{method} {path} as {who:?}: {status}, expected {want}: {answer}"
                ));
            }
            if status >= 400 && path.starts_with("/api/") {
                assert!(
                    answer["error"].is_string() && answer["message"].is_string(),
                    "{method} {path}: {answer}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn lessees_see_only_their_halls() {
    let server = Server::start().await;
    let (_, acme_nodes) = server
        .call("GET", "/api/v1/nodes", Some(&server.tokens.acme), None)
        .await;
    let serials: Vec<&str> = acme_nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["serial"].as_str())
        .collect();
    assert_eq!(serials, ["A-0", "A-1", "A-2", "A-3"]);
    // Asking for another lessee's nodes does not widen the view.
    let (_, widened) = server
        .call(
            "GET",
            "/api/v1/nodes?lessee=globex",
            Some(&server.tokens.acme),
            None,
        )
        .await;
    assert_eq!(widened["nodes"].as_array().map(Vec::len), Some(4));
    let (_, globex) = server
        .call("GET", "/api/v1/nodes", Some(&server.tokens.globex), None)
        .await;
    assert_eq!(globex["nodes"].as_array().map(Vec::len), Some(0));
    let (_, halls) = server
        .call("GET", "/api/v1/halls", Some(&server.tokens.acme), None)
        .await;
    let names: Vec<&str> = halls["halls"]
        .as_array()
        .expect("halls")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(names, ["H1"]);
    let (_, map) = server
        .call("GET", "/api/v1/map", Some(&server.tokens.globex), None)
        .await;
    assert_eq!(map["halls"].as_array().map(Vec::len), Some(0));
    let (_, leases) = server
        .call("GET", "/api/v1/leases", Some(&server.tokens.globex), None)
        .await;
    assert_eq!(leases["leases"].as_array().map(Vec::len), Some(0));
    // A 404 for a hidden node reads exactly like one for a missing node.
    let (_, hidden) = server
        .call(
            "GET",
            "/api/v1/nodes/A-0",
            Some(&server.tokens.globex),
            None,
        )
        .await;
    let (_, missing) = server
        .call(
            "GET",
            "/api/v1/nodes/ZZZ",
            Some(&server.tokens.globex),
            None,
        )
        .await;
    assert_eq!(hidden["error"], missing["error"]);
    assert_eq!(hidden["message"], "no node with serial \"A-0\"");
}
