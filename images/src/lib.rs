//! kiln-images: the image catalog's files and serving, the verifying streaming writer, and cloud-init seeds.
//!
//! - [`writer`]: HTTP → raw/zstd/qcow2 → disk, sha256-verified, resumable, sparse-aware.
//! - [`qcow2`]: the qcow2 header/L1/L2 reader the writer expands images with.
//! - [`seed`]: cloud-init NoCloud `meta-data`, `user-data`, `network-config`.
//!
//! The server half, behind the default feature `server` (the node agent builds without it: it needs only the
//! writer, and so links no kiln-inventory, SQL or axum):
//!
//! - `cas`: the content-addressed store on disk and `ImageLibrary`, which keeps it in step with the
//!   inventory's catalog (`kiln image add/list/rm`).
//! - `serve`: an axum `Router` serving images with Range, ETag/If-None-Match and HEAD.
//! - `signature`: ed25519 signatures over image digests.
//!
//! Invariant: a write is reported good only after the sha256 of every downloaded byte matched the catalog's.
//! Invariant: a failed write that touched the disk leaves its first MiB zeroed.

#[cfg(feature = "server")]
pub mod cas;
pub mod digest;
pub mod http;
#[cfg(feature = "server")]
pub mod mapped;
pub mod qcow2;
pub mod seed;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "server")]
pub mod signature;
pub mod writer;

#[cfg(feature = "server")]
pub use cas::{ContentStore, ImageLibrary, ImageMeta, StoreFsError, StoredBlob, detect_format};
pub use digest::{BadDigest, Sha256Digest};
pub use http::{http_client, http_client_trusting};
pub use kiln_model::{Image, ImageFormat};
#[cfg(feature = "server")]
pub use serve::image_router;
pub use writer::{
    Progress, RetryPolicy, Target, WriteError, WriteReport, WriteRequest, write_image,
};
