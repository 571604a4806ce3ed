//! `kiln bench images`: kiln's image serving against nginx, and kiln's streaming writer against `curl | dd`.
//!
//! In one run, over loopback: an image of `--size-mb` MiB is cataloged in a scratch inventory and served by
//! kiln's image router and by nginx (Debian's package, installed here when missing) from the same file; N
//! parallel `curl` clients download it from each (alternating rounds, best round kept) and the aggregate
//! throughputs are compared. Then the same raw and zstd images are written to a file by kiln's writer (which
//! also verifies the sha256) and by `curl | dd` / `curl | zstd -d | dd`, both pulling from nginx and both
//! ending with an fsync. A benchmark, not a test: the numbers depend on the machine and its load.
//!
//! The image is not sparse (no all-zero blocks, which kiln's writer would skip and dd would not): each MiB is
//! half pseudo-random bytes and half repeated text, so zstd compresses it about 2:1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kiln_images::{
    ContentStore, ImageFormat, ImageLibrary, ImageMeta, Sha256Digest, Target, WriteRequest,
    http_client, image_router, write_image,
};
use kiln_inventory::{Store, StoreOptions};
use serde::Serialize;
use tokio::process::Command;

use crate::{Output, table};

/// Longest any single download or write may take before the benchmark gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(900);

/// Serve and write images with kiln, nginx, curl, dd and zstd; print throughputs and ratios.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image size in MiB.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=65536))]
    size_mb: u64,
    /// Parallel download clients in the serving comparison.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    clients: u32,
    /// Rounds per contender (alternating); the best round of each is kept.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Scratch directory (default: the system temp dir); needs about 3.5× the image size free.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// What the benchmark measured; with `--json` printed as the last line.
#[derive(Debug, Serialize)]
struct ImagesBench {
    serve_ratio_vs_nginx: f64,
    write_raw_ratio_vs_dd: f64,
    write_zstd_ratio_vs_dd: f64,
    size_mb: u64,
    clients: u32,
    rounds: u32,
    kiln_serve_mib_s: f64,
    nginx_serve_mib_s: f64,
    kiln_write_raw_mib_s: f64,
    dd_write_raw_mib_s: f64,
    kiln_write_zstd_mib_s: f64,
    dd_write_zstd_mib_s: f64,
    zstd_image_mb: f64,
}

pub async fn exec(args: Args, output: &Output) -> anyhow::Result<()> {
    let nginx = ensure_tools().await?;
    let scratch = match &args.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("kiln-bench-images")
            .tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("kiln-bench-images")
            .tempdir(),
    }
    .context("creating a scratch directory")?;
    // nginx's workers run as another user: they must be able to walk into the scratch directory.
    set_mode(scratch.path(), 0o755)?;
    let size = args.size_mb << 20;

    eprintln!("bench: generating a {} MiB image …", args.size_mb);
    let raw_source = scratch.path().join("image.raw");
    generate_image(&raw_source, size)?;
    let zst_source = scratch.path().join("image.raw.zst");
    run_checked(
        Command::new("zstd")
            .args(["-q", "-3", "-T0", "-f", "-o"])
            .arg(&zst_source)
            .arg(&raw_source),
        "zstd compressing the image",
    )
    .await?;

    let store = Store::open(StoreOptions::new(format!(
        "sqlite://{}",
        scratch.path().join("bench.db").display()
    )))
    .await
    .context("opening the scratch inventory")?;
    let blobs_root = scratch.path().join("blobs");
    let library = ImageLibrary::new(store.clone(), ContentStore::new(&blobs_root));
    let mut cataloged = Vec::new();
    for (path, name, format) in [
        (&raw_source, "bench-raw", ImageFormat::Raw),
        (&zst_source, "bench-zstd", ImageFormat::RawZstd),
    ] {
        let image = library
            .add(
                path,
                &ImageMeta {
                    name: name.into(),
                    version: "1".into(),
                    os: None,
                    format: Some(format),
                    signature: None,
                    signing_key_id: None,
                    verify_with: None,
                },
            )
            .await
            .with_context(|| format!("cataloging {}", path.display()))?;
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        cataloged.push(image);
    }
    let (raw, zst) = (&cataloged[0], &cataloged[1]);
    let raw_digest: Sha256Digest = raw.sha256.parse()?;
    let zst_digest: Sha256Digest = zst.sha256.parse()?;
    for dir in walk_dirs(&blobs_root)? {
        set_mode(&dir, 0o755)?;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let kiln_addr = listener.local_addr()?;
    let kiln_server =
        tokio::spawn(axum::serve(listener, image_router(library.clone())).into_future());
    let nginx = Nginx::start(&nginx, scratch.path(), &blobs_root).await?;
    let blob_path = |digest: &Sha256Digest| {
        let hex = digest.to_hex();
        format!("sha256/{}/{hex}", &hex[..2])
    };
    let kiln_url = format!("http://{kiln_addr}/images/bench-raw/1");
    let nginx_raw_url = format!("{}/{}", nginx.base_url, blob_path(&raw_digest));
    let nginx_zst_url = format!("{}/{}", nginx.base_url, blob_path(&zst_digest));

    eprintln!(
        "bench: serving, {} parallel clients, {} round(s) each …",
        args.clients, args.rounds
    );
    let mut kiln_serve = 0f64;
    let mut nginx_serve = 0f64;
    for _ in 0..args.rounds {
        kiln_serve = kiln_serve.max(parallel_download(&kiln_url, args.clients, size).await?);
        nginx_serve = nginx_serve.max(parallel_download(&nginx_raw_url, args.clients, size).await?);
    }

    eprintln!(
        "bench: writing raw and zstd images to a file, kiln's writer vs curl | [zstd -d |] dd …"
    );
    let out = scratch.path().join("disk.img");
    let mut best = [0f64; 4];
    for _ in 0..args.rounds {
        best[0] = best[0].max(kiln_write(&nginx_raw_url, raw, raw_digest, &out, size).await?);
        best[1] = best[1].max(shell_write(&nginx_raw_url, false, &out, size).await?);
        best[2] = best[2].max(kiln_write(&nginx_zst_url, zst, zst_digest, &out, size).await?);
        best[3] = best[3].max(shell_write(&nginx_zst_url, true, &out, size).await?);
    }
    let _ = std::fs::remove_file(&out);
    nginx.stop().await;
    kiln_server.abort();
    store.close().await;

    let report = ImagesBench {
        serve_ratio_vs_nginx: kiln_serve / nginx_serve,
        write_raw_ratio_vs_dd: best[0] / best[1],
        write_zstd_ratio_vs_dd: best[2] / best[3],
        size_mb: args.size_mb,
        clients: args.clients,
        rounds: args.rounds,
        kiln_serve_mib_s: kiln_serve,
        nginx_serve_mib_s: nginx_serve,
        kiln_write_raw_mib_s: best[0],
        dd_write_raw_mib_s: best[1],
        kiln_write_zstd_mib_s: best[2],
        dd_write_zstd_mib_s: best[3],
        zstd_image_mb: zst.size_bytes as f64 / f64::from(1 << 20),
    };
    let row = |what: String, kiln: f64, peer: &str, peer_mib_s: f64, ratio: f64, goal: &str| {
        vec![
            what,
            format!("{kiln:.1}"),
            peer.to_string(),
            format!("{peer_mib_s:.1}"),
            format!("{ratio:.2}"),
            goal.to_string(),
        ]
    };
    let rows = vec![
        row(
            format!("serve {} MiB to {} clients", args.size_mb, args.clients),
            report.kiln_serve_mib_s,
            "nginx",
            report.nginx_serve_mib_s,
            report.serve_ratio_vs_nginx,
            "≥ 0.90",
        ),
        row(
            format!("write raw ({} MiB)", args.size_mb),
            report.kiln_write_raw_mib_s,
            "curl | dd",
            report.dd_write_raw_mib_s,
            report.write_raw_ratio_vs_dd,
            "≥ 0.95",
        ),
        row(
            format!("write zstd ({:.0} MiB compressed)", report.zstd_image_mb),
            report.kiln_write_zstd_mib_s,
            "curl | zstd -d | dd",
            report.dd_write_zstd_mib_s,
            report.write_zstd_ratio_vs_dd,
            "≥ 0.95",
        ),
    ];
    println!(
        "{}",
        table::render(
            &[
                "WHAT",
                "KILN MiB/s",
                "AGAINST",
                "ITS MiB/s",
                "RATIO",
                "GOAL"
            ],
            &rows
        )
    );
    if output.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Finds nginx, installing Debian's `nginx-light` (and curl/zstd) when missing; returns the nginx binary.
async fn ensure_tools() -> anyhow::Result<PathBuf> {
    let nginx = || {
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
    };
    let missing: Vec<&str> = [
        ("nginx-light", nginx().is_none()),
        ("curl", which("curl").is_none()),
        ("zstd", which("zstd").is_none()),
    ]
    .into_iter()
    .filter_map(|(package, missing)| missing.then_some(package))
    .collect();
    if !missing.is_empty() {
        eprintln!("bench: installing {} (Debian packages)", missing.join(" "));
        let root = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })?;
        let apt = |args: &[&str]| {
            let mut command = if root {
                Command::new("apt-get")
            } else {
                let mut sudo = Command::new("sudo");
                sudo.arg("apt-get");
                sudo
            };
            command
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null());
            command
        };
        run_checked(&mut apt(&["update", "-qq"]), "apt-get update").await?;
        let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
        install.args(&missing);
        run_checked(&mut install, "apt-get install").await?;
    }
    nginx().context("nginx is not installed (apt-get install nginx-light)")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

async fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("starting {what}"))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn walk_dirs(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = vec![root.to_path_buf()];
    let mut index = 0;
    while index < dirs.len() {
        for entry in std::fs::read_dir(&dirs[index])? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        index += 1;
    }
    Ok(dirs)
}

/// Writes `size` bytes: per MiB, 512 KiB of xorshift output then 512 KiB of repeated text (never all zeros).
fn generate_image(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::io::Write;
    const MIB: usize = 1 << 20;
    let text: Vec<u8> = b"kiln bench image: compressible but not zero. "
        .iter()
        .copied()
        .cycle()
        .take(MIB / 2)
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; MIB];
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut left = size;
    while left > 0 {
        for word in chunk[..MIB / 2].chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        chunk[MIB / 2..].copy_from_slice(&text);
        let take = left.min(MIB as u64) as usize;
        file.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    file.flush()?;
    Ok(())
}

/// An nginx serving `root` on a loopback port, stopped when dropped.
struct Nginx {
    base_url: String,
    child: tokio::process::Child,
}

impl Nginx {
    async fn start(binary: &Path, scratch: &Path, root: &Path) -> anyhow::Result<Self> {
        let prefix = scratch.join("nginx");
        std::fs::create_dir_all(&prefix)?;
        // A free port: bind, read it, let go (nginx binds it a moment later; a clash fails clearly below).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let p = prefix.display();
        let config = format!(
            "daemon off;\nworker_processes auto;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  default_type application/octet-stream;\n\
               client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
               uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }}\n}}\n",
            root = root.display()
        );
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting nginx")?;
        let nginx = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(10) {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                bail!("nginx did not start listening on port {port} within 10 s: {log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(nginx)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `clients` concurrent `curl` downloads of `url` (each must get `size` bytes); aggregate MiB/s.
async fn parallel_download(url: &str, clients: u32, size: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut downloads = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let mut command = Command::new("curl");
        command
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                "--max-time",
            ])
            .arg(STEP_TIMEOUT.as_secs().to_string())
            .arg(url)
            .kill_on_drop(true);
        downloads.spawn(async move { command.output().await });
    }
    while let Some(result) = downloads.join_next().await {
        let output = result?.context("running curl")?;
        let got = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success() && got.trim() == size.to_string(),
            "curl {url} got {got} bytes of {size} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(mib_per_s(size * u64::from(clients), started.elapsed()))
}

/// kiln's writer: `url` → verified → `out`; MiB/s of disk bytes.
async fn kiln_write(
    url: &str,
    image: &kiln_inventory::Image,
    digest: Sha256Digest,
    out: &Path,
    disk_size: u64,
) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(out);
    let mut request = WriteRequest::new(url, digest, image.format);
    request.expected_size = Some(u64::try_from(image.size_bytes)?);
    let started = Instant::now();
    let report = tokio::time::timeout(
        STEP_TIMEOUT,
        write_image(&http_client(), &request, Target::file(out, None)?),
    )
    .await
    .context("kiln's writer timed out")??;
    let elapsed = started.elapsed();
    ensure!(
        report.disk_bytes == disk_size,
        "kiln's writer produced {} bytes, expected {disk_size}",
        report.disk_bytes
    );
    Ok(mib_per_s(disk_size, elapsed))
}

/// `curl url | [zstd -d |] dd of=out conv=fsync`; MiB/s of disk bytes.
async fn shell_write(url: &str, zstd: bool, out: &Path, disk_size: u64) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(out);
    let decode = if zstd { "zstd -d -q -c |" } else { "" };
    let pipeline = format!(
        "set -o pipefail; curl -sS --max-time {} \"$1\" | {decode} dd of=\"$2\" bs=4M iflag=fullblock conv=fsync status=none",
        STEP_TIMEOUT.as_secs()
    );
    let started = Instant::now();
    run_checked(
        Command::new("bash")
            .args(["-c", &pipeline, "bench"])
            .arg(url)
            .arg(out),
        "the curl | dd pipeline",
    )
    .await?;
    let elapsed = started.elapsed();
    let written = std::fs::metadata(out)?.len();
    ensure!(
        written == disk_size,
        "curl | dd wrote {written} bytes, expected {disk_size}"
    );
    Ok(mib_per_s(disk_size, elapsed))
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 20) / elapsed.as_secs_f64().max(1e-9)
}
