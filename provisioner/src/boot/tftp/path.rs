//! Confining requested file names to the TFTP root.

use std::path::{Component, Path, PathBuf};

/// Why a requested name is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// An absolute path (`/etc/passwd`, `C:\…`).
    #[error("absolute path {0:?} refused")]
    Absolute(String),
    /// A `..` component.
    #[error("path {0:?} climbs out of the root with '..'")]
    ParentDir(String),
    /// The name resolves (through a symlink) to a place outside the root.
    #[error("path {0:?} leads outside the root")]
    OutsideRoot(String),
    /// No such file.
    #[error("no file {0:?}")]
    NotFound(String),
    /// It exists but is not a regular file (a directory, a device).
    #[error("{0:?} is not a regular file")]
    NotAFile(String),
}

/// Resolves `requested` inside `root` (which must already be canonical). Backslashes count as separators,
/// since some PXE ROMs send DOS-style names.
pub fn resolve_in_root(root: &Path, requested: &str) -> Result<PathBuf, PathRefused> {
    let normalized = requested.replace('\\', "/");
    if normalized.starts_with('/') || normalized.chars().nth(1) == Some(':') {
        return Err(PathRefused::Absolute(requested.to_string()));
    }
    let mut relative = PathBuf::new();
    for component in Path::new(&normalized).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathRefused::ParentDir(requested.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathRefused::Absolute(requested.to_string()));
            }
        }
    }
    let joined = root.join(&relative);
    let real = std::fs::canonicalize(&joined).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => PathRefused::NotFound(requested.to_string()),
        _ => PathRefused::OutsideRoot(requested.to_string()),
    })?;
    if !real.starts_with(root) {
        return Err(PathRefused::OutsideRoot(requested.to_string()));
    }
    if !real.is_file() {
        return Err(PathRefused::NotAFile(requested.to_string()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confines_names_to_the_root() -> std::io::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret"), b"no")?;
        let dir = tempfile::tempdir()?;
        let root = std::fs::canonicalize(dir.path())?;
        std::fs::create_dir(root.join("efi"))?;
        std::fs::write(root.join("efi/ipxe.efi"), b"x")?;
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link"))?;
        std::os::unix::fs::symlink(root.join("efi/ipxe.efi"), root.join("inner"))?;

        assert_eq!(
            resolve_in_root(&root, "efi/ipxe.efi"),
            Ok(root.join("efi/ipxe.efi"))
        );
        assert_eq!(
            resolve_in_root(&root, "./efi\\ipxe.efi"),
            Ok(root.join("efi/ipxe.efi"))
        );
        assert_eq!(
            resolve_in_root(&root, "inner"),
            Ok(root.join("efi/ipxe.efi"))
        );
        assert!(matches!(
            resolve_in_root(&root, "../etc/passwd"),
            Err(PathRefused::ParentDir(_))
        ));
        assert!(matches!(
            resolve_in_root(&root, "efi/../../x"),
            Err(PathRefused::ParentDir(_))
        ));
        assert!(matches!(
            resolve_in_root(&root, "/etc/passwd"),
            Err(PathRefused::Absolute(_))
        ));
        assert!(matches!(
            resolve_in_root(&root, "C:\\boot"),
            Err(PathRefused::Absolute(_))
        ));
        assert!(matches!(
            resolve_in_root(&root, "link"),
            Err(PathRefused::OutsideRoot(_))
        ));
        assert!(matches!(
            resolve_in_root(&root, "missing"),
            Err(PathRefused::NotFound(_))
        ));
        assert!(matches!(
            resolve_in_root(&root, "efi"),
            Err(PathRefused::NotAFile(_))
        ));
        Ok(())
    }
}
