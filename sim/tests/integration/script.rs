//! The script parser against scripts rendered by kiln's real `BootHttp` (via the stub's endpoint).

use kiln_images::ImageFormat;
use kiln_inventory::MacAddr;
use kiln_provisioner::boot::decision::{BootAction, RamdiskMode};
use kiln_sim::script::{BootScript, parse};
use tokio::net::TcpListener;

use crate::stub::Stub;

#[tokio::test]
async fn every_script_kiln_renders_parses() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stub = Stub::start(listener, BootAction::LocalDisk).await;
    let mac: MacAddr = "02:4b:00:00:07:00".parse().expect("mac");
    let http = kiln_images::http_client();
    let fetch = |action| {
        stub.set_action(mac, action);
        let url = format!("{}/boot/{mac}.ipxe", stub.url);
        let http = http.clone();
        async move {
            let text = http
                .get(url)
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("text");
            (
                parse(&text).unwrap_or_else(|err| panic!("{err}: {text}")),
                text,
            )
        }
    };
    let (local, text) = fetch(BootAction::LocalDisk).await;
    assert_eq!(local, BootScript::LocalDisk, "{text}");
    for mode in [
        RamdiskMode::Discovery,
        RamdiskMode::Inspect,
        RamdiskMode::Image,
        RamdiskMode::Wipe,
    ] {
        let (script, text) = fetch(BootAction::Ramdisk(mode)).await;
        let BootScript::Ramdisk(args) = script else {
            panic!("not a ramdisk script: {text}");
        };
        assert_eq!(args.mode, mode);
        assert_eq!(args.mac, Some(mac));
        assert_eq!(args.url, stub.url);
        assert_eq!(Some(&args.token), stub.tokens_for(mac).last());
        match mode {
            RamdiskMode::Image | RamdiskMode::Wipe => {
                let image = args.image.expect("image args");
                assert_eq!(image.sha256.to_hex(), stub.image_sha256);
                assert_eq!(image.format, ImageFormat::Raw);
                assert_eq!(
                    image.url,
                    format!("{}/images/sha256/{}", stub.url, stub.image_sha256)
                );
            }
            _ => assert!(args.image.is_none(), "{text}"),
        }
    }
}
