//! kiln-images: the image catalog's files and serving, the verifying streaming writer, and cloud-init seeds.
//!
//! - [`cas`]: the content-addressed store on disk and [`ImageLibrary`], which keeps it in step with the
//!   inventory's catalog (`kiln image add/list/rm`).
//! - [`serve`]: an axum [`axum::Router`] serving images with Range, ETag/If-None-Match and HEAD.
//! - [`writer`]: HTTP → raw/zstd/qcow2 → disk, sha256-verified, resumable, sparse-aware.
//! - [`qcow2`]: the qcow2 header/L1/L2 reader the writer expands images with.
//! - [`signature`]: ed25519 signatures over image digests.
//! - [`seed`]: cloud-init NoCloud `meta-data`, `user-data`, `network-config`.
//!
//! Invariant: a write is reported good only after the sha256 of every downloaded byte matched the catalog's.
//! Invariant: a failed write that touched the disk leaves its first MiB zeroed.

pub mod cas;
pub mod digest;
pub mod http;
pub mod mapped;
pub mod qcow2;
pub mod seed;
pub mod serve;
pub mod signature;
pub mod writer;

pub use cas::{ContentStore, ImageLibrary, ImageMeta, StoreFsError, StoredBlob, detect_format};
pub use digest::{BadDigest, Sha256Digest};
pub use http::http_client;
pub use kiln_inventory::{Image, ImageFormat};
pub use serve::image_router;
pub use writer::{
    Progress, RetryPolicy, Target, WriteError, WriteReport, WriteRequest, write_image,
};
