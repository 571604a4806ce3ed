//! The provisioner's SSH identity, one owner for its key file: loading an OpenSSH private key, creating one
//! (ed25519, mode 0600) when absent, and the public key line nodes are given.

use russh::keys::PrivateKey;

/// An SSH private key file kiln cannot use.
#[derive(Debug, thiserror::Error)]
#[error("cannot load SSH private key {path}")]
pub struct SshKeyError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What russh reported.
    #[source]
    pub source: russh::keys::Error,
}

/// Loads an unencrypted OpenSSH private key.
pub fn load_private_key(path: &std::path::Path) -> Result<PrivateKey, SshKeyError> {
    russh::keys::load_secret_key(path, None).map_err(|source| SshKeyError {
        path: path.to_path_buf(),
        source,
    })
}

/// The provisioner's SSH client key at `path`, created (ed25519, mode 0600) when absent. Returns the key and
/// whether it was created.
pub fn load_or_create_key(path: &std::path::Path) -> Result<(PrivateKey, bool), String> {
    if path.exists() {
        return load_private_key(path)
            .map(|key| (key, false))
            .map_err(|err| format!("{err}: {}", err.source));
    }
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ));
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|err| format!("encoding a new SSH key: {err}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    }
    write_private(path, text.as_bytes())
        .map_err(|err| format!("writing {}: {err}", path.display()))?;
    Ok((key, true))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The OpenSSH public key line of `key` (what a node's `authorized_keys` holds).
pub fn public_key_line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_loaded_again() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys/kiln-ssh.key");
        let (created, fresh) = load_or_create_key(&path).expect("create");
        assert!(fresh);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (loaded, fresh) = load_or_create_key(&path).expect("load");
        assert!(!fresh);
        assert_eq!(public_key_line(&loaded), public_key_line(&created));
        assert!(public_key_line(&loaded).starts_with("ssh-ed25519 "));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("kiln-ssh.key");
        std::fs::write(&path, "not a key").expect("write");
        let err = load_or_create_key(&path).expect_err("garbage");
        assert!(err.contains("kiln-ssh.key"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "not a key");
    }
}
