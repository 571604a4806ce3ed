//! The content-addressed image store on disk, and the library that keeps it and the inventory's catalog in step.
//!
//! Layout under the root: `sha256/<first two hex digits>/<64 hex digits>` for stored images, `tmp/` for copies in
//! progress (renamed into place only once complete and hashed, so a stored blob is always whole).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kiln_inventory::{Image, ImageAdded, ImageFormat, NewImage, Store, StoreError};
use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;

/// Size of the copy buffer when importing files.
const COPY_BUFFER_BYTES: usize = 1 << 20;

/// Why a content-store or library operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreFsError {
    /// A file or directory could not be read or written.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The blob is already stored.
    #[error("image content sha256:{digest} is already in the store")]
    Duplicate {
        /// Its digest.
        digest: Sha256Digest,
    },
    /// The catalog already has an image with this name and version.
    #[error("image {name} version {version} is already cataloged (sha256:{sha256})")]
    NameVersionTaken {
        /// Image name.
        name: String,
        /// Version.
        version: String,
        /// Digest of the cataloged one.
        sha256: String,
    },
    /// The same bytes are already cataloged under another name or version.
    #[error("these bytes (sha256:{sha256}) are already cataloged as {name} version {version}")]
    SameContent {
        /// Name they are cataloged under.
        name: String,
        /// Version they are cataloged under.
        version: String,
        /// Their digest.
        sha256: String,
    },
    /// No catalog entry by that name and version.
    #[error("no image {name} version {version} in the catalog")]
    NotFound {
        /// Image name.
        name: String,
        /// Version.
        version: String,
    },
    /// The file is larger than the catalog can record.
    #[error("{path} is too large to catalog")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not what its format says.
    #[error("{path} is not a usable {format} image: {detail}")]
    BadImage {
        /// The file.
        path: PathBuf,
        /// The format it was to be cataloged as.
        format: ImageFormat,
        /// What is wrong.
        detail: String,
    },
    /// The signature is malformed or does not verify.
    #[error("image {path}")]
    Signature {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::signature::SignatureError,
    },
    /// The inventory refused.
    #[error("image catalog")]
    Catalog(#[from] StoreError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreFsError {
    let path = path.to_path_buf();
    move |source| StoreFsError::Io { op, path, source }
}

/// A blob now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its content address.
    pub digest: Sha256Digest,
    /// Its size.
    pub size_bytes: u64,
    /// Where it lives.
    pub path: PathBuf,
}

/// Image files on disk, named by their sha256.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// A store rooted at `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn path_of(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// Whether the blob is stored.
    pub fn contains(&self, digest: &Sha256Digest) -> bool {
        self.path_of(digest).is_file()
    }

    /// Copies `source` into the store, hashing while copying. Refuses ([`StoreFsError::Duplicate`]) when the
    /// same bytes are already stored; the partial copy is removed on any failure.
    pub fn import(&self, source: &Path) -> Result<StoredBlob, StoreFsError> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io("creating", &tmp_dir))?;
        let mut input = std::fs::File::open(source).map_err(io("opening", source))?;
        let tmp_path = tmp_dir.join(format!(
            "import-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let result = self.copy_and_place(&mut input, source, &tmp_path);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp_path);
        }
        result
    }

    fn copy_and_place(
        &self,
        input: &mut std::fs::File,
        source: &Path,
        tmp_path: &Path,
    ) -> Result<StoredBlob, StoreFsError> {
        let mut output = std::fs::File::create(tmp_path).map_err(io("creating", tmp_path))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
        let mut size_bytes = 0u64;
        loop {
            let read = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(io("reading", source)(err)),
            };
            hasher.update(&buffer[..read]);
            output
                .write_all(&buffer[..read])
                .map_err(io("writing", tmp_path))?;
            size_bytes += read as u64;
        }
        output.sync_all().map_err(io("syncing", tmp_path))?;
        drop(output);
        let digest = Sha256Digest::from_hasher(hasher);
        let path = self.path_of(&digest);
        if path.exists() {
            return Err(StoreFsError::Duplicate { digest });
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::rename(tmp_path, &path).map_err(io("moving into place", &path))?;
        tracing::info!(digest = %digest, size_bytes, "stored image blob");
        Ok(StoredBlob {
            digest,
            size_bytes,
            path,
        })
    }

    /// Deletes a blob; returns whether it existed.
    pub fn remove(&self, digest: &Sha256Digest) -> Result<bool, StoreFsError> {
        let path = self.path_of(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io("removing", &path)(err)),
        }
    }
}

/// Guesses a file's format from its first bytes: qcow2 and zstd have magic numbers; anything else is raw.
pub fn detect_format(path: &Path) -> Result<ImageFormat, StoreFsError> {
    let mut file = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match file.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io("reading", path)(err)),
        }
    }
    Ok(match magic {
        [b'Q', b'F', b'I', 0xfb] => ImageFormat::Qcow2,
        [0x28, 0xb5, 0x2f, 0xfd] => ImageFormat::RawZstd,
        _ => ImageFormat::Raw,
    })
}

/// Refuses a file that cannot be written as `format`: a qcow2 whose header kiln cannot read (or that uses a
/// feature kiln does not support), or a `raw.zst` without the zstd magic number. Found here, not on a node.
fn check_format(path: &Path, format: ImageFormat) -> Result<(), StoreFsError> {
    let bad = |detail: String| StoreFsError::BadImage {
        path: path.to_path_buf(),
        format,
        detail,
    };
    match format {
        ImageFormat::Raw => Ok(()),
        ImageFormat::RawZstd => match detect_format(path)? {
            ImageFormat::RawZstd => Ok(()),
            found => Err(bad(format!("it looks like {found}, not zstd"))),
        },
        ImageFormat::Qcow2 => {
            let file = std::fs::File::open(path).map_err(io("opening", path))?;
            crate::qcow2::Qcow2Image::open(file)
                .map(|_| ())
                .map_err(|err| bad(err.to_string()))
        }
    }
}

/// What to catalog a file as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// Image name.
    pub name: String,
    /// Version.
    pub version: String,
    /// OS it carries.
    pub os: Option<String>,
    /// Format; detected from the file's magic number when `None`.
    pub format: Option<ImageFormat>,
    /// Detached ed25519 signature over the digest, base64.
    pub signature: Option<String>,
    /// Id of the key that made the signature.
    pub signing_key_id: Option<String>,
    /// When set, `signature` must verify with this key before anything is cataloged.
    pub verify_with: Option<ed25519_dalek::VerifyingKey>,
}

/// The catalog (in the inventory) and the blobs (on disk) together: adding and removing keeps them in step.
#[derive(Debug, Clone)]
pub struct ImageLibrary {
    /// The inventory holding the catalog.
    pub catalog: Store,
    /// The blobs.
    pub blobs: ContentStore,
}

impl ImageLibrary {
    /// A library over this inventory and blob store.
    pub fn new(catalog: Store, blobs: ContentStore) -> Self {
        Self { catalog, blobs }
    }

    /// Copies `file` into the store and catalogs it. Refuses a taken name+version or bytes already cataloged;
    /// a blob left behind by an earlier interrupted add is adopted.
    pub async fn add(&self, file: &Path, meta: &ImageMeta) -> Result<Image, StoreFsError> {
        if let Some(existing) = self.catalog.image(&meta.name, &meta.version).await? {
            return Err(StoreFsError::NameVersionTaken {
                name: existing.name,
                version: existing.version,
                sha256: existing.sha256,
            });
        }
        let format = match meta.format {
            Some(format) => format,
            None => detect_format(file)?,
        };
        check_format(file, format)?;
        let blobs = self.blobs.clone();
        let source = file.to_path_buf();
        let imported = tokio::task::spawn_blocking(move || blobs.import(&source))
            .await
            .map_err(|err| StoreFsError::Io {
                op: "copying",
                path: file.to_path_buf(),
                source: std::io::Error::other(err.to_string()),
            })?;
        let (blob, fresh) = match imported {
            Ok(blob) => (blob, true),
            Err(StoreFsError::Duplicate { digest }) => {
                if let Some(existing) = self.catalog.image_by_sha256(&digest.to_hex()).await? {
                    return Err(StoreFsError::SameContent {
                        name: existing.name,
                        version: existing.version,
                        sha256: existing.sha256,
                    });
                }
                let path = self.blobs.path_of(&digest);
                let size_bytes = std::fs::metadata(&path)
                    .map_err(io("reading metadata of", &path))?
                    .len();
                let blob = StoredBlob {
                    digest,
                    size_bytes,
                    path,
                };
                (blob, false)
            }
            Err(err) => return Err(err),
        };
        if let (Some(key), Some(signature)) = (&meta.verify_with, &meta.signature) {
            let key_id = meta.signing_key_id.as_deref().unwrap_or("(unnamed)");
            if let Err(source) =
                crate::signature::verify_digest(key, key_id, &blob.digest, signature)
            {
                if fresh {
                    let _ = self.blobs.remove(&blob.digest);
                }
                return Err(StoreFsError::Signature {
                    path: file.to_path_buf(),
                    source,
                });
            }
        }
        let new = NewImage {
            name: meta.name.clone(),
            version: meta.version.clone(),
            os: meta.os.clone(),
            format,
            size_bytes: i64::try_from(blob.size_bytes).map_err(|_| StoreFsError::TooLarge {
                path: file.to_path_buf(),
            })?,
            sha256: blob.digest.to_hex(),
            signature: meta.signature.clone(),
            signing_key_id: meta.signing_key_id.clone(),
        };
        let outcome = self.catalog.add_image(&new).await;
        let refused = |err: StoreFsError| {
            if fresh {
                let _ = self.blobs.remove(&blob.digest);
            }
            Err(err)
        };
        match outcome {
            Ok(ImageAdded::Added(image)) => Ok(image),
            Ok(ImageAdded::SameNameVersion(existing)) => refused(StoreFsError::NameVersionTaken {
                name: existing.name,
                version: existing.version,
                sha256: existing.sha256,
            }),
            Ok(ImageAdded::SameContent(existing)) => refused(StoreFsError::SameContent {
                name: existing.name,
                version: existing.version,
                sha256: existing.sha256,
            }),
            Err(err) => refused(err.into()),
        }
    }

    /// Removes an image from the catalog, then its blob.
    pub async fn remove(&self, name: &str, version: &str) -> Result<Image, StoreFsError> {
        let removed = self
            .catalog
            .remove_image(name, version)
            .await?
            .ok_or_else(|| StoreFsError::NotFound {
                name: name.to_string(),
                version: version.to_string(),
            })?;
        if let Ok(digest) = removed.sha256.parse::<Sha256Digest>() {
            self.blobs.remove(&digest)?;
        }
        Ok(removed)
    }
}
