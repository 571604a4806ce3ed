//! The library: add copies into the content store and catalogs, duplicates are refused, rm removes both.

use kiln_images::{ImageFormat, ImageMeta, Sha256Digest, StoreFsError};

use crate::support::TestLibrary;

fn meta(name: &str, version: &str) -> ImageMeta {
    ImageMeta {
        name: name.into(),
        version: version.into(),
        os: Some("debian 13".into()),
        format: None,
        signature: None,
        signing_key_id: None,
        verify_with: None,
    }
}

#[tokio::test]
async fn add_list_remove_and_duplicates() {
    let t = TestLibrary::new().await;
    let bytes = crate::support::disk_bytes(300_000, 1);
    let file = t.file("disk.raw", &bytes);
    let image = t
        .library
        .add(&file, &meta("debian", "1"))
        .await
        .expect("add");
    let digest = Sha256Digest::of(&bytes);
    assert_eq!(image.sha256, digest.to_hex());
    assert_eq!(image.size_bytes, 300_000);
    assert_eq!(image.format, ImageFormat::Raw);
    let stored = t.library.blobs.path_of(&digest);
    assert_eq!(
        std::fs::read(&stored).expect("blob"),
        bytes,
        "the blob is a faithful copy"
    );

    let err = t
        .library
        .add(&file, &meta("debian", "2"))
        .await
        .expect_err("same bytes");
    assert!(
        matches!(&err, StoreFsError::SameContent { name, version, .. } if name == "debian" && version == "1"),
        "{err}"
    );
    let other = t.file("other.raw", b"other bytes");
    let err = t
        .library
        .add(&other, &meta("debian", "1"))
        .await
        .expect_err("same name");
    assert!(
        matches!(err, StoreFsError::NameVersionTaken { .. }),
        "{err}"
    );
    assert!(
        !t.library.blobs.contains(&Sha256Digest::of(b"other bytes")),
        "a refused add leaves no blob behind"
    );

    let zst = t.file(
        "disk.raw.zst",
        &zstd::encode_all(&bytes[..], 3).expect("zstd"),
    );
    let compressed = t
        .library
        .add(&zst, &meta("debian", "2"))
        .await
        .expect("add zst");
    assert_eq!(
        compressed.format,
        ImageFormat::RawZstd,
        "format detected from magic"
    );
    let listed = t.library.catalog.images().await.expect("list");
    assert_eq!(listed, vec![image.clone(), compressed]);

    let removed = t.library.remove("debian", "1").await.expect("rm");
    assert_eq!(removed, image);
    assert!(!stored.exists(), "rm deletes the blob");
    let err = t.library.remove("debian", "1").await.expect_err("gone");
    assert!(matches!(err, StoreFsError::NotFound { .. }), "{err}");
    let mut as_qcow2 = meta("x", "1");
    as_qcow2.format = Some(ImageFormat::Qcow2);
    let err = t
        .library
        .add(&file, &as_qcow2)
        .await
        .expect_err("raw is not qcow2");
    assert!(matches!(err, StoreFsError::BadImage { .. }), "{err}");
    assert!(err.to_string().contains("not a qcow2 image"), "{err}");
    let mut as_zstd = meta("x", "1");
    as_zstd.format = Some(ImageFormat::RawZstd);
    let err = t
        .library
        .add(&file, &as_zstd)
        .await
        .expect_err("raw is not zstd");
    assert!(err.to_string().contains("looks like raw"), "{err}");
    let qcow = t.file("disk.qcow2", &crate::qcow2::build_qcow2(&bytes, 16, false));
    let image = t.library.add(&qcow, &meta("q", "1")).await.expect("qcow2");
    assert_eq!(image.format, ImageFormat::Qcow2, "detected");
    let err = t
        .library
        .add(&t.dir.path().join("missing.raw"), &meta("x", "1"))
        .await
        .expect_err("missing file");
    assert!(err.to_string().contains("missing.raw"), "{err}");
}

#[test]
fn content_store_refuses_duplicate_blobs() {
    let dir = tempfile::tempdir().expect("dir");
    let store = kiln_images::ContentStore::new(dir.path().join("blobs"));
    let file = dir.path().join("f");
    std::fs::write(&file, b"hello").expect("write");
    let blob = store.import(&file).expect("import");
    assert_eq!(blob.digest, Sha256Digest::of(b"hello"));
    assert_eq!(blob.size_bytes, 5);
    let err = store.import(&file).expect_err("duplicate");
    assert!(
        matches!(err, StoreFsError::Duplicate { digest } if digest == blob.digest),
        "{err}"
    );
    let leftovers = std::fs::read_dir(dir.path().join("blobs/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(leftovers, 0, "no partial copies left in tmp/");
    assert!(store.remove(&blob.digest).expect("remove"));
    assert!(!store.remove(&blob.digest).expect("remove again"));
}

#[tokio::test]
async fn signatures_are_verified_before_cataloging() {
    use kiln_images::signature::{SignatureError, parse_public_key, sign_digest};
    let t = TestLibrary::new().await;
    let bytes = crate::support::disk_bytes(100_000, 77);
    let file = t.file("signed.raw", &bytes);
    let digest = Sha256Digest::of(&bytes);
    let site = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let other = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let site_public =
        parse_public_key(&hex::encode(site.verifying_key().to_bytes())).expect("hex key");

    let mut forged = meta("signed", "1");
    forged.signature = Some(sign_digest(&other, &digest));
    forged.signing_key_id = Some("site-2026".into());
    forged.verify_with = Some(site_public);
    let err = t.library.add(&file, &forged).await.expect_err("wrong key");
    assert!(
        matches!(&err, StoreFsError::Signature { source: SignatureError::Invalid { key_id, .. }, .. } if key_id == "site-2026"),
        "{err}"
    );
    assert!(
        !t.library.blobs.contains(&digest),
        "a refused add leaves no blob"
    );

    let mut garbled = forged.clone();
    garbled.signature = Some("not base64!".into());
    let err = t.library.add(&file, &garbled).await.expect_err("malformed");
    assert!(
        matches!(
            err,
            StoreFsError::Signature {
                source: SignatureError::MalformedSignature,
                ..
            }
        ),
        "{err}"
    );

    let mut signed = forged.clone();
    signed.signature = Some(sign_digest(&site, &digest));
    let image = t.library.add(&file, &signed).await.expect("signed add");
    assert_eq!(image.signature, signed.signature);
    assert_eq!(image.signing_key_id.as_deref(), Some("site-2026"));
    assert_eq!(
        parse_public_key("abc").err(),
        Some(SignatureError::MalformedKey)
    );
}
