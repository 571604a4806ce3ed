//! Serving: full and ranged GETs, HEAD, ETag/If-None-Match, 416 and 404, by digest and by name.

use kiln_images::{ImageMeta, image_router};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_NONE_MATCH, RANGE};

use crate::support::{TestLibrary, serve};

#[tokio::test]
async fn ranges_etags_and_head() {
    let t = TestLibrary::new().await;
    let bytes = crate::support::disk_bytes(1_500_000, 5);
    let file = t.file("disk.raw", &bytes);
    let meta = ImageMeta {
        name: "img".into(),
        version: "1".into(),
        os: None,
        format: None,
        signature: None,
        signing_key_id: None,
        verify_with: None,
    };
    let image = t.library.add(&file, &meta).await.expect("add");
    let base = serve(image_router(t.library.clone())).await;
    let by_digest = format!("{base}/images/sha256/{}", image.sha256);
    let client = kiln_images::http_client();

    let full = client.get(&by_digest).send().await.expect("get");
    assert_eq!(full.status(), StatusCode::OK);
    let etag = full.headers()[ETAG].to_str().expect("etag").to_string();
    assert_eq!(etag, format!("\"{}\"", image.sha256));
    assert_eq!(full.headers()[ACCEPT_RANGES], "bytes");
    assert_eq!(full.bytes().await.expect("body"), bytes);

    let part = client
        .get(&by_digest)
        .header(RANGE, "bytes=1000000-")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()[CONTENT_RANGE],
        "bytes 1000000-1499999/1500000"
    );
    assert_eq!(part.bytes().await.expect("body"), bytes[1_000_000..]);

    let suffix = client
        .get(&by_digest)
        .header(RANGE, "bytes=-10")
        .send()
        .await
        .expect("suffix");
    assert_eq!(
        suffix.bytes().await.expect("body"),
        bytes[bytes.len() - 10..]
    );

    let beyond = client
        .get(&by_digest)
        .header(RANGE, "bytes=2000000-")
        .send()
        .await
        .expect("416");
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.headers()[CONTENT_RANGE], "bytes */1500000");

    let cached = client
        .get(&by_digest)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("304");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert!(cached.bytes().await.expect("body").is_empty());

    let head = client.head(&by_digest).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[CONTENT_LENGTH], "1500000");
    assert!(head.bytes().await.expect("body").is_empty());

    let named = client
        .get(format!("{base}/images/img/1"))
        .header(RANGE, "bytes=0-99")
        .send()
        .await
        .expect("by name");
    assert_eq!(named.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        named.headers()["x-kiln-sha256"].to_str().ok(),
        Some(image.sha256.as_str())
    );
    assert_eq!(named.headers()["x-kiln-image-format"], "raw");
    assert_eq!(named.bytes().await.expect("body"), bytes[..100]);

    for (url, status) in [
        (format!("{base}/images/img/2"), StatusCode::NOT_FOUND),
        (
            format!("{base}/images/sha256/{}", "0".repeat(64)),
            StatusCode::NOT_FOUND,
        ),
        (format!("{base}/images/sha256/xyz"), StatusCode::BAD_REQUEST),
    ] {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(response.status(), status, "{url}");
    }
}
