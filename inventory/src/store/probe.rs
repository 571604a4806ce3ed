//! A read-only look at a database before kiln uses it (`kiln doctor`): which engine, its version and, for a
//! server, its clock. Unlike [`Store::open`](super::Store::open) it never creates a file nor applies migrations.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyPoolOptions;

use super::{Backend, get, normalize_url, redact_url};
use crate::error::StoreError;

/// What [`probe_database`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseInfo {
    /// The engine.
    pub backend: Backend,
    /// The engine's version (`server_version` of PostgreSQL, `sqlite_version()` of SQLite).
    pub version: String,
    /// The server's clock when asked (PostgreSQL only: SQLite runs in this process, on this clock).
    pub server_time: Option<DateTime<Utc>>,
    /// The SQLite file (PostgreSQL: none), and whether it exists yet.
    pub file: Option<(PathBuf, bool)>,
}

/// Connects to `url` once with a short timeout and reads the engine's version and clock. An SQLite file that
/// does not exist yet is reported as such (`file`), not created: the version then comes from an in-memory
/// database of the same library.
pub async fn probe_database(url: &str, timeout: Duration) -> Result<DatabaseInfo, StoreError> {
    super::install_drivers();
    let (backend, normalized) = normalize_url(url)?;
    let shown = redact_url(url);
    let connect_err = |source| StoreError::Connect {
        url: shown.clone(),
        source,
    };
    let (connect_url, file) = match backend {
        Backend::Postgres => (normalized, None),
        Backend::Sqlite => {
            let path = sqlite_path(&normalized);
            let exists = path.exists();
            let connect_url = if exists {
                format!("sqlite://{}?mode=ro", path.display())
            } else {
                "sqlite::memory:".to_string()
            };
            (connect_url, Some((path, exists)))
        }
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect(&connect_url)
        .await
        .map_err(connect_err)?;
    let query = match backend {
        Backend::Postgres => {
            "SELECT current_setting('server_version') AS version, \
             CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS millis"
        }
        Backend::Sqlite => "SELECT sqlite_version() AS version, CAST(NULL AS INTEGER) AS millis",
    };
    let row = sqlx::query(query)
        .fetch_one(&pool)
        .await
        .map_err(StoreError::db("reading the database version"));
    pool.close().await;
    let row = row?;
    let version: String = get(&row, "version")?;
    let millis: Option<i64> = get(&row, "millis")?;
    Ok(DatabaseInfo {
        backend,
        version,
        server_time: millis.and_then(DateTime::from_timestamp_millis),
        file,
    })
}

/// The file path of a normalized `sqlite://PATH?…` URL.
fn sqlite_path(normalized: &str) -> PathBuf {
    let rest = normalized.strip_prefix("sqlite://").unwrap_or(normalized);
    let path = rest.split('?').next().unwrap_or(rest);
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_sqlite_file_is_reported_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.db");
        let url = format!("sqlite://{}", path.display());
        let info = probe_database(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(info.backend, Backend::Sqlite);
        assert!(info.version.starts_with('3'), "{}", info.version);
        assert_eq!(info.file, Some((path.clone(), false)));
        assert_eq!(info.server_time, None);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_existing_sqlite_file_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.db");
        let url = format!("sqlite://{}", path.display());
        let store = crate::Store::open(crate::StoreOptions::new(&url))
            .await
            .unwrap();
        store.close().await;
        let info = probe_database(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(info.file, Some((path, true)));
    }

    #[tokio::test]
    async fn a_bad_url_is_named() {
        let err = probe_database("mysql://u:secret@h/db", Duration::from_secs(1))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn postgres_gives_its_version_and_clock() {
        if std::env::var("KILN_TEST_PG").as_deref() == Ok("off") {
            eprintln!("KILN_TEST_PG=off: skipping");
            return;
        }
        let info = probe_database(
            "postgres://postgres@127.0.0.1:5432/test",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(info.backend, Backend::Postgres);
        assert!(
            info.version
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit()),
            "{}",
            info.version
        );
        let skew = (info.server_time.unwrap() - Utc::now()).num_seconds().abs();
        assert!(skew < 60, "the same machine's clock is {skew} s away");
        assert_eq!(info.file, None);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_naming_it_without_the_password() {
        let err = probe_database(
            "postgres://kiln:hunter2@127.0.0.1:1/kiln",
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1:1") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn sqlite_paths_lose_their_options() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/kiln/kiln.db?mode=rwc"),
            PathBuf::from("/var/lib/kiln/kiln.db")
        );
        assert_eq!(
            sqlite_path("sqlite://kiln.db?mode=rwc"),
            PathBuf::from("kiln.db")
        );
    }
}
