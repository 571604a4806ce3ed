//! HTTPS for the API: the API is served over TLS (and not on the plain listener), the plain listener keeps the
//! node-facing endpoints, a reload swaps the certificate for new connections while an open connection keeps
//! working, and a bad certificate or key file is refused with the old pair still serving.

use std::path::Path;
use std::sync::Arc;

use kiln_inventory::{Store, StoreOptions};
use kiln_server::{ServerOptions, TlsFiles, TlsServing, TlsState};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pair {
    cert: String,
    key: String,
}

fn pair() -> Pair {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).expect("certificate");
    Pair {
        cert: generated.cert.pem(),
        key: generated.signing_key.serialize_pem(),
    }
}

fn write(files: &TlsFiles, pair: &Pair) {
    std::fs::write(&files.cert, &pair.cert).expect("write cert");
    std::fs::write(&files.key, &pair.key).expect("write key");
}

fn trusting(pair: &Pair) -> reqwest::Client {
    kiln_images::http_client_trusting(pair.cert.as_bytes()).expect("client")
}

async fn status(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .send()
        .await
        .map(|response| response.status().as_u16())
        .map_err(|err| format!("{err:?}"))
}

/// One request on an open TLS stream; returns the status line.
async fn request_on<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "the server closed the connection mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head.lines().next().unwrap_or_default().to_string()
}

async fn open_tls(
    addr: std::net::SocketAddr,
    pair: &Pair,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pair.cert.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

async fn store(dir: &Path) -> Store {
    Store::open(StoreOptions::new(format!(
        "sqlite://{}",
        dir.join("kiln.db").display()
    )))
    .await
    .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_tls_and_a_reload_keeps_open_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let first = pair();
    write(&files, &first);
    let state = TlsState::load(files.clone()).expect("load");
    let store = store(dir.path()).await;
    let running = kiln_server::start(
        store.clone(),
        ServerOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            public_url: None,
            image_dir: dir.path().join("images"),
            assets_dir: dir.path().join("assets"),
            engine: None,
            access: None,
            bmcs: None,
            listener: None,
            boot_router: None,
            signing_key: None,
            tls: Some(TlsServing {
                listen: "127.0.0.1:0".parse().expect("addr"),
                listener: None,
                state: state.clone(),
            }),
        },
    )
    .await
    .expect("start");
    let (tls_addr, served) = running.tls.clone().expect("a TLS listener");
    assert_eq!(served.fingerprint(), state.fingerprint());
    let https = format!("https://{tls_addr}");
    let plain = format!("http://{}", running.addr);

    // The API answers over HTTPS (401: no token), and is not on the plain listener; agent reports stay there.
    let client = trusting(&first);
    assert_eq!(
        status(&client, &format!("{https}/api/v1/nodes")).await,
        Ok(401)
    );
    let http = kiln_images::http_client();
    assert_eq!(
        status(&http, &format!("{plain}/api/v1/nodes")).await,
        Ok(404)
    );
    let report = http
        .post(format!("{plain}/agent/v1/report"))
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("report");
    assert_ne!(
        report.status().as_u16(),
        404,
        "agent reports stay on the plain listener"
    );
    // A client that does not trust the certificate is refused at the handshake.
    let stranger = trusting(&pair());
    let refused = status(&stranger, &format!("{https}/api/v1/nodes")).await;
    assert!(refused.is_err(), "{refused:?}");

    // An open connection survives a reload; new connections get the new certificate.
    let mut open = open_tls(tls_addr, &first).await;
    assert!(request_on(&mut open, "/api/v1/nodes").await.contains("401"));
    let second = pair();
    write(&files, &second);
    let fingerprint = state.reload().expect("reload");
    assert_eq!(fingerprint, state.fingerprint());
    assert_eq!(
        served.fingerprint(),
        fingerprint,
        "the listener serves the reloaded state"
    );
    assert!(request_on(&mut open, "/api/v1/nodes").await.contains("401"));
    assert_eq!(
        status(&trusting(&second), &format!("{https}/api/v1/nodes")).await,
        Ok(401)
    );
    assert!(
        status(&trusting(&first), &format!("{https}/api/v1/nodes"))
            .await
            .is_err(),
        "new connections must present the new certificate"
    );

    // A broken key file is refused by name; the pair loaded before keeps serving.
    std::fs::write(&files.key, "not a key").expect("write");
    let err = format!("{:#}", state.reload().expect_err("garbage key"));
    assert!(err.contains("key.pem"), "{err}");
    assert_eq!(state.fingerprint(), fingerprint);
    // A key from another pair does not go with the certificate.
    std::fs::write(&files.key, &first.key).expect("write");
    let err = format!("{:#}", state.reload().expect_err("mismatched key"));
    assert!(err.contains("does not go with"), "{err}");
    std::fs::write(&files.cert, "-----BEGIN NOTHING-----\n").expect("write");
    let err = format!("{:#}", state.reload().expect_err("no certificate"));
    assert!(err.contains("cert.pem"), "{err}");
    assert_eq!(
        status(&trusting(&second), &format!("{https}/api/v1/nodes")).await,
        Ok(401)
    );

    running.stop().await;
    store.close().await;
}
