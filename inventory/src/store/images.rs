//! The image catalog: which OS images kiln can write to nodes, by name and version, with the sha256 that
//! addresses their bytes in kiln-images' content store. A digest is cataloged at most once.

pub use kiln_model::{Image, ImageFormat, UnknownImageFormat};
use sqlx::any::AnyRow;

use super::{Store, get, get_parsed, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;

/// An image to catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    /// Image name.
    pub name: String,
    /// Version within the name.
    pub version: String,
    /// Operating system it carries.
    pub os: Option<String>,
    /// Byte layout.
    pub format: ImageFormat,
    /// Size of the stored file.
    pub size_bytes: i64,
    /// Lowercase hex sha256 of the stored file.
    pub sha256: String,
    /// Detached ed25519 signature over the digest, base64.
    pub signature: Option<String>,
    /// Which key made the signature.
    pub signing_key_id: Option<String>,
}

/// What [`Store::add_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageAdded {
    /// The image is now in the catalog.
    Added(Image),
    /// Nothing changed: an image with the same name and version is already cataloged.
    SameNameVersion(Image),
    /// Nothing changed: the same bytes (same sha256) are already cataloged under another name or version.
    SameContent(Image),
}

const COLUMNS: &str =
    "id, name, version, os, format, size_bytes, sha256, signature, signing_key_id, created_at";

fn image_from_row(row: &AnyRow) -> Result<Image, StoreError> {
    Ok(Image {
        id: get(row, "id")?,
        name: get(row, "name")?,
        version: get(row, "version")?,
        os: get(row, "os")?,
        format: get_parsed(row, "format")?,
        size_bytes: get(row, "size_bytes")?,
        sha256: get(row, "sha256")?,
        signature: get(row, "signature")?,
        signing_key_id: get(row, "signing_key_id")?,
        created_at: get_time(row, "created_at")?,
    })
}

impl Store {
    /// Catalogs an image unless its name+version or its sha256 is already there (then nothing changes and the
    /// existing row is returned, so the caller can say which one it collides with).
    pub async fn add_image(&self, image: &NewImage) -> Result<ImageAdded, StoreError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting an image insert"))?;
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM images WHERE (name = $1 AND version = $2) OR sha256 = $3 ORDER BY id"
        ))
        .bind(&image.name)
        .bind(&image.version)
        .bind(&image.sha256)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("looking for a cataloged duplicate"))?;
        if let Some(row) = existing.first() {
            let found = image_from_row(row)?;
            return Ok(
                if found.name == image.name && found.version == image.version {
                    ImageAdded::SameNameVersion(found)
                } else {
                    ImageAdded::SameContent(found)
                },
            );
        }
        let row = sqlx::query(&format!(
            "INSERT INTO images (name, version, os, format, size_bytes, sha256, signature, signing_key_id, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        ))
        .bind(&image.name)
        .bind(&image.version)
        .bind(&image.os)
        .bind(image.format.as_str())
        .bind(image.size_bytes)
        .bind(&image.sha256)
        .bind(&image.signature)
        .bind(&image.signing_key_id)
        .bind(to_millis(self.now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("cataloging an image"))?;
        let added = image_from_row(&row)?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing an image insert"))?;
        Ok(ImageAdded::Added(added))
    }

    /// Every cataloged image, by name then id (versions in the order they were added).
    pub async fn images(&self) -> Result<Vec<Image>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM images ORDER BY name, id"))
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("listing images"))?;
        rows.iter().map(image_from_row).collect()
    }

    /// The image with this name and version, if cataloged.
    pub async fn image(&self, name: &str, version: &str) -> Result<Option<Image>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM images WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("reading an image"))?
        .map(|row| image_from_row(&row))
        .transpose()
    }

    /// The image whose stored bytes have this sha256 (lowercase hex), if cataloged.
    pub async fn image_by_sha256(&self, sha256: &str) -> Result<Option<Image>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE sha256 = $1"))
            .bind(sha256)
            .fetch_optional(&self.read)
            .await
            .map_err(StoreError::db("reading an image by digest"))?
            .map(|row| image_from_row(&row))
            .transpose()
    }

    /// Removes an image from the catalog; returns the removed row, or `None` when there was none.
    pub async fn remove_image(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Image>, StoreError> {
        sqlx::query(&format!(
            "DELETE FROM images WHERE name = $1 AND version = $2 RETURNING {COLUMNS}"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.write)
        .await
        .map_err(StoreError::db("removing an image"))?
        .map(|row| image_from_row(&row))
        .transpose()
    }
}
