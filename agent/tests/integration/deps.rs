//! The agent's dependency budget: kiln-agent runs in the PXE ramdisk, so no database driver, HTTP server or
//! OpenAPI crate may be linked into it, and neither may kiln-inventory (the SQL store).
//!
//! The tree comes from `cargo tree -p kiln-agent -e normal`, not from `cargo metadata`: metadata resolves features
//! for the whole workspace at once, so there kiln-images appears with its `server` feature (and kiln-inventory,
//! axum) because the provisioner enables it, although the agent's own build never does. `cargo tree -p` resolves
//! features the way `cargo build -p kiln-agent` (the ramdisk's build) does.

use std::process::Command;

/// Crates the agent must not link: an exact name, or a prefix ending in `*`.
const FORBIDDEN: &[&str] = &["sqlx*", "axum*", "tower-http", "utoipa*", "kiln-inventory"];

/// Forbidden crates allowed under one parent: reqwest (0.12.2x) follows redirects with tower-http's client-side
/// middleware, so the HTTP client itself brings it; tower-http from anything else is a server in the tree.
const ALLOWED_UNDER: &[(&str, &str)] = &[("reqwest", "tower-http")];

fn forbidden(parent: Option<&str>, name: &str) -> bool {
    let listed = FORBIDDEN.iter().any(|rule| match rule.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *rule,
    });
    listed
        && !ALLOWED_UNDER
            .iter()
            .any(|&(allowed_parent, allowed)| Some(allowed_parent) == parent && allowed == name)
}

/// For each forbidden crate in a `cargo tree --prefix depth -f {p}` listing, the path to it from the root
/// (`kiln-agent -> kiln-images -> kiln-inventory`). Lines read `<depth><name> v<version>[ (<source>)][ (*)]`.
fn offending_paths(tree: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut found = Vec::new();
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let Some(name) = line[digits..].split_whitespace().next() else {
            continue;
        };
        stack.truncate(depth);
        let parent = stack.last().map(String::as_str);
        let bad = forbidden(parent, name);
        stack.push(name.to_string());
        if bad {
            let path = stack.join(" -> ");
            if !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn offending_paths_names_each_forbidden_crate_with_its_path() {
    let tree = "0kiln-agent v0.1.0 (/work/agent)\n\
                1kiln-images v0.1.0 (/work/images)\n\
                2kiln-inventory v0.1.0 (/work/inventory)\n\
                3sqlx v0.8.6\n\
                4sqlx-core v0.8.6\n\
                2axum v0.8.4\n\
                1serde v1.0.228\n\
                1kiln-health v0.1.0 (/work/healthchecks)\n\
                2tower-http v0.6.6 (*)\n\
                2tower v0.5.2\n\
                1reqwest v0.12.28\n\
                2tower-http v0.6.6\n";
    assert_eq!(
        offending_paths(tree),
        [
            "kiln-agent -> kiln-images -> kiln-inventory",
            "kiln-agent -> kiln-images -> kiln-inventory -> sqlx",
            "kiln-agent -> kiln-images -> kiln-inventory -> sqlx -> sqlx-core",
            "kiln-agent -> kiln-images -> axum",
            "kiln-agent -> kiln-health -> tower-http",
        ]
    );
    let clean =
        "0kiln-agent v0.1.0 (/work/agent)\n1kiln-model v0.1.0 (/work/model)\n2serde v1.0.228\n";
    assert!(offending_paths(clean).is_empty());
}

#[test]
fn the_agent_links_no_database_http_server_or_inventory_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args(["tree", "--manifest-path", manifest, "-p", "kiln-agent"])
        .args(["-e", "normal", "--prefix", "depth", "-f", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8 tree");
    assert!(
        tree.starts_with("0kiln-agent "),
        "unexpected cargo tree output: {tree}"
    );
    let offending = offending_paths(&tree);
    assert!(
        offending.is_empty(),
        "kiln-agent's normal dependencies include forbidden crates:\n{}",
        offending.join("\n")
    );
}
