//! BMC passwords: sealed at rest, never in Debug output or logs, and a wrong key is a clear error.

use std::io::Write;
use std::sync::{Arc, Mutex};

use kiln_inventory::{ManifestFormat, SecretKey, Store, StoreError, StoreOptions, parse_manifest};

use crate::support::{CSV_HEADER, TestDb};

const PASSWORD: &str = "Tr0ub4dor&3-zebra";

fn manifest() -> String {
    format!(
        "{CSV_HEADER}\nH1,R1,1,S-1,h100-sxm-80gb,10.0.0.1,redfish,admin,{PASSWORD},02:00:00:00:00:01\n"
    )
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// current_thread: the thread-local subscriber sees every task of the test.
#[tokio::test(flavor = "current_thread")]
async fn passwords_never_in_debug_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = TestDb::sqlite().await;
    let rows = parse_manifest(&manifest(), ManifestFormat::Csv, &|_| None).expect("parse");
    tracing::debug!(rows = ?rows, "parsed manifest");
    db.store
        .import_manifest(&rows, "site", "test")
        .await
        .expect("import");
    let node = db.store.node_by_serial("S-1").await.expect("node");
    let creds = db.store.bmc_credentials(node.id).await.expect("creds");
    assert_eq!(
        creds.password.expose(),
        PASSWORD,
        "the real value is available to the code that needs it"
    );
    tracing::info!(creds = ?creds, node = ?node, "using credentials");

    let debug = format!("{rows:?} {node:?} {creds:?} {:?} {:?}", db.store, db.key);
    assert!(
        !debug.contains(PASSWORD),
        "password in Debug output: {debug}"
    );
    assert!(debug.contains("Secret(***)"));
    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        logs.contains("manifest imported") && logs.contains("using credentials"),
        "logs were captured: {logs}"
    );
    assert!(!logs.contains(PASSWORD), "password in logs");

    // At rest the column holds only the sealed form.
    let raw = std::fs::read(db.url.trim_start_matches("sqlite://")).expect("db file");
    let wal = std::fs::read(format!("{}-wal", db.url.trim_start_matches("sqlite://")))
        .unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "plaintext password on disk"
        );
    }
}

#[tokio::test]
async fn wrong_key_is_a_clear_error() {
    let db = TestDb::sqlite().await;
    let rows = parse_manifest(&manifest(), ManifestFormat::Csv, &|_| None).expect("parse");
    db.store
        .import_manifest(&rows, "site", "test")
        .await
        .expect("import");
    let node = db.store.node_by_serial("S-1").await.expect("node");
    db.store.close().await;

    let wrong =
        Store::open(StoreOptions::new(db.url.clone()).key(Some(SecretKey::generate()))).await;
    let err = wrong.expect_err("a different key must be refused");
    assert!(matches!(err, StoreError::WrongSecretKey));
    assert!(err.to_string().contains("KILN_SECRET_KEY"), "{err}");

    // Without a key the inventory still reads, but passwords stay sealed, with an error saying why.
    let keyless = Store::open(StoreOptions::new(db.url.clone()))
        .await
        .expect("open without key");
    assert_eq!(
        keyless.node_by_serial("S-1").await.expect("node").id,
        node.id
    );
    let err = keyless.bmc_credentials(node.id).await.expect_err("no key");
    assert!(err.to_string().contains("no secret key"), "{err}");

    let right = Store::open(StoreOptions::new(db.url.clone()).key(Some(db.key.clone())))
        .await
        .expect("right key");
    assert_eq!(
        right
            .bmc_credentials(node.id)
            .await
            .expect("creds")
            .password
            .expose(),
        PASSWORD
    );
}

#[test]
fn key_file_is_created_private_and_reloaded() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("kiln.key");
    // The env variable wins over files, so this test only runs its file half when it is unset.
    if std::env::var(kiln_inventory::SECRET_KEY_ENV).is_ok() {
        return;
    }
    assert!(SecretKey::load(&path).expect("load").is_none());
    let (key, created) = SecretKey::load_or_create(&path).expect("create");
    assert!(created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (again, created) = SecretKey::load_or_create(&path).expect("reload");
    assert!(!created);
    let sealed = key.seal(&kiln_inventory::Secret::new("x"));
    assert_eq!(again.open(&sealed, "t").expect("same key").expose(), "x");
    std::fs::write(&path, "garbage").expect("write");
    let err = SecretKey::load(&path).expect_err("bad file");
    assert!(err.to_string().contains("kiln.key"), "{err}");
}
