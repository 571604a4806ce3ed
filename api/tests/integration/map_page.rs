//! The hall map page in real headless Chromium: the node count is right and the nodes are drawn in their
//! states' colours. The screenshot is kept at `target/ci-artifacts/hall-map.png`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Server;

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("headless Chromium is needed for this test: apt-get install chromium (scripts/test.sh installs it)")
}

/// Runs Chromium headless on `url` with a fresh profile; returns stdout.
fn run_chromium(extra: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Counts pixels of exactly this colour.
fn count_colour(png_path: &std::path::Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("png"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("png frame");
    let channels = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| px[..3] == rgb)
        .count()
}

// Chromium runs as a separate process for several seconds; a multi-thread runtime keeps the server answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hall_map_renders_states_in_chromium() {
    let server = Server::start().await;
    let url = server.url(&format!("/?token={}", server.tokens.admin));
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_chromium(&["--dump-dom"], &url)
    })
    .await
    .expect("join");
    let count = dom
        .split("id=\"node-count\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(str::to_string);
    assert_eq!(count.as_deref(), Some("6"), "node count on the page");
    assert_eq!(dom.matches("data-state=\"leased\"").count(), 4);
    assert_eq!(dom.matches("data-state=\"available\"").count(), 1);
    assert_eq!(dom.matches("data-state=\"enrolled\"").count(), 1);

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ci-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("hall-map.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || run_chromium(&[&format!("--screenshot={}", shot.display())], &url)
    })
    .await
    .expect("join");
    // The stylesheet's colours for leased (#1b5e20), available (#2e7d32) and enrolled (#9e9e9e) nodes.
    let leased = count_colour(&shot, [0x1b, 0x5e, 0x20]);
    let available = count_colour(&shot, [0x2e, 0x7d, 0x32]);
    let enrolled = count_colour(&shot, [0x9e, 0x9e, 0x9e]);
    assert!(
        leased > 4 * 200,
        "leased nodes drawn dark green ({leased} px)"
    );
    assert!(
        available > 200,
        "available node drawn green ({available} px)"
    );
    assert!(enrolled > 200, "enrolled node drawn grey ({enrolled} px)");
    assert!(
        leased > available * 2,
        "four leased nodes outweigh one available node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hall_map_for_a_lessee_shows_only_its_hall() {
    let server = Server::start().await;
    let url = server.url(&format!("/?token={}", server.tokens.acme));
    let dom = tokio::task::spawn_blocking(move || run_chromium(&["--dump-dom"], &url))
        .await
        .expect("join");
    assert!(
        dom.contains("id=\"node-count\">4<"),
        "acme sees its four nodes"
    );
    assert!(dom.contains("data-hall=\"H1\"") && !dom.contains("data-hall=\"H2\""));
}
