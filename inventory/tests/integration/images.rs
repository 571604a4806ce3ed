//! The image catalog on both backends: add, duplicates refused, list, lookup, remove.

use kiln_inventory::{ImageAdded, ImageFormat, NewImage};

use crate::both_backends;
use crate::support::TestDb;

both_backends!(image_catalog_round_trip);

fn new_image(name: &str, version: &str, digest_byte: char) -> NewImage {
    NewImage {
        name: name.into(),
        version: version.into(),
        os: Some("ubuntu 24.04".into()),
        format: ImageFormat::RawZstd,
        size_bytes: 1 << 33,
        sha256: std::iter::repeat_n(digest_byte, 64).collect(),
        signature: Some("c2lnbmF0dXJl".into()),
        signing_key_id: Some("site-2026".into()),
    }
}

async fn image_catalog_round_trip(db: TestDb) {
    let first = new_image("ubuntu-gpu", "1", 'a');
    let ImageAdded::Added(added) = db.store.add_image(&first).await.expect("add") else {
        panic!("first add must insert");
    };
    assert_eq!(
        (added.name.as_str(), added.version.as_str(), added.format),
        ("ubuntu-gpu", "1", ImageFormat::RawZstd)
    );
    assert_eq!(added.size_bytes, 1 << 33, "sizes above 4 GiB survive");
    assert_eq!(added.signing_key_id.as_deref(), Some("site-2026"));
    assert_eq!(added.created_at, kiln_inventory::Clock::now(&*db.clock));

    // Same name+version with other bytes, and same bytes under another name: both refused, nothing written.
    let same_name = new_image("ubuntu-gpu", "1", 'b');
    assert_eq!(
        db.store.add_image(&same_name).await.expect("dup name"),
        ImageAdded::SameNameVersion(added.clone())
    );
    let same_bytes = new_image("other", "9", 'a');
    assert_eq!(
        db.store.add_image(&same_bytes).await.expect("dup bytes"),
        ImageAdded::SameContent(added.clone())
    );

    let mut second = new_image("ubuntu-gpu", "2", 'c');
    second.os = None;
    second.signature = None;
    second.signing_key_id = None;
    second.format = ImageFormat::Qcow2;
    let ImageAdded::Added(second) = db.store.add_image(&second).await.expect("add 2") else {
        panic!("second version must insert");
    };
    assert_eq!(second.os, None);
    let all = db.store.images().await.expect("list");
    assert_eq!(all, vec![added.clone(), second.clone()]);
    assert_eq!(
        db.store.image("ubuntu-gpu", "2").await.expect("get"),
        Some(second.clone())
    );
    assert_eq!(
        db.store
            .image_by_sha256(&added.sha256)
            .await
            .expect("by digest"),
        Some(added.clone())
    );
    assert_eq!(db.store.image("ubuntu-gpu", "3").await.expect("none"), None);

    assert_eq!(
        db.store.remove_image("ubuntu-gpu", "1").await.expect("rm"),
        Some(added)
    );
    assert_eq!(
        db.store
            .remove_image("ubuntu-gpu", "1")
            .await
            .expect("rm again"),
        None
    );
    assert_eq!(db.store.images().await.expect("list"), vec![second]);
}

#[test]
fn image_format_names() {
    for format in [ImageFormat::Raw, ImageFormat::Qcow2, ImageFormat::RawZstd] {
        assert_eq!(format.as_str().parse::<ImageFormat>(), Ok(format));
    }
    assert_eq!("ZSTD".parse::<ImageFormat>(), Ok(ImageFormat::RawZstd));
    let err = "vmdk".parse::<ImageFormat>().expect_err("unknown");
    assert!(err.to_string().contains("vmdk"), "{err}");
}
