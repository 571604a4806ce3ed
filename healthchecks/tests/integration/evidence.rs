//! Signed acceptance records: sign, verify offline, reject tampering.

use ed25519_dalek::SigningKey;
use kiln_health::burnin::evidence_digest;
use kiln_health::evidence::{
    AcceptanceRecord, EvidenceDigest, EvidenceError, SignedRecord, canonical_json, load_public_key,
    load_signing_key, sign, verify,
};
use kiln_health::nccl::{NcclRun, judge_run};
use serde_json::json;

use crate::support::{fixture, profile};

fn record() -> AcceptanceRecord {
    let run = NcclRun {
        hosts: vec!["host-01".into()],
        exit_code: Some(0),
        timed_out: false,
        output: fixture("nccl/all_reduce_h100_1node.txt"),
    };
    AcceptanceRecord {
        node: "SN-1234".into(),
        sku: "h100-sxm-80gb".into(),
        hardware: json!({"gpus": [{"index": 0, "uuid": "GPU-0", "serial": "1650"}]}),
        firmware: json!({"bios": "1.2.3", "vbios": "96.00.74.00.01"}),
        image_digest: Some("ab".repeat(32)),
        verdicts: vec![judge_run(&run, &profile("h100-sxm-80gb"))],
        evidence_sha256: vec![EvidenceDigest {
            kind: "nccl".into(),
            health_run: Some(3),
            sha256: evidence_digest(&json!({"output": run.output})),
        }],
        nccl: json!({"avg_busbw_gbps": 112.943, "nodes": 1}),
        created_at_unix_s: 1_795_000_000,
        erased_before_lease: None,
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

#[test]
fn signed_record_verifies_offline_and_round_trips() {
    let signed = sign(&record(), &key(7)).expect("signs");
    let text = serde_json::to_string_pretty(&signed).expect("json");
    let back = verify(&text, &key(7).verifying_key()).expect("verifies");
    assert_eq!(back, record());
}

#[test]
fn the_evidence_digest_is_signed_and_records_without_it_still_verify() {
    let signed = sign(&record(), &key(7)).expect("signs");
    let mut swapped = signed.clone();
    swapped.record["evidence_sha256"][0]["sha256"] = json!("00".repeat(32));
    assert!(matches!(
        verify(
            &serde_json::to_string(&swapped).expect("json"),
            &key(7).verifying_key()
        ),
        Err(EvidenceError::BadSignature { .. })
    ));
    // A record signed before the field existed still verifies, with no digests.
    let mut old = record();
    old.evidence_sha256.clear();
    let mut value = serde_json::to_value(&old).expect("json");
    value
        .as_object_mut()
        .expect("object")
        .remove("evidence_sha256");
    let signature = ed25519_dalek::Signer::sign(&key(7), canonical_json(&value).as_bytes());
    let legacy = SignedRecord {
        record: value,
        algorithm: "ed25519".into(),
        public_key_hex: hex::encode(key(7).verifying_key().as_bytes()),
        signature_hex: hex::encode(signature.to_bytes()),
    };
    let back = verify(
        &serde_json::to_string(&legacy).expect("json"),
        &key(7).verifying_key(),
    )
    .expect("legacy verifies");
    assert!(back.evidence_sha256.is_empty());
}

#[test]
fn tampered_record_fails_verification() {
    let signed = sign(&record(), &key(7)).expect("signs");
    let mut tampered: SignedRecord = signed.clone();
    tampered.record["nccl"]["avg_busbw_gbps"] = json!(480.0);
    let err = verify(
        &serde_json::to_string(&tampered).expect("json"),
        &key(7).verifying_key(),
    )
    .expect_err("tampered");
    assert!(matches!(err, EvidenceError::BadSignature { .. }));

    let mut flipped = signed.clone();
    flipped.record["verdicts"][0]["checks"][0]["status"] = json!("fail");
    assert!(
        verify(
            &serde_json::to_string(&flipped).expect("json"),
            &key(7).verifying_key()
        )
        .is_err()
    );

    let mut bad_sig = signed;
    bad_sig.signature_hex = "00".repeat(64);
    assert!(
        verify(
            &serde_json::to_string(&bad_sig).expect("json"),
            &key(7).verifying_key()
        )
        .is_err()
    );
}

#[test]
fn a_record_signed_by_another_key_fails_even_if_it_names_that_key() {
    let signed = sign(&record(), &key(9)).expect("signs");
    let err = verify(
        &serde_json::to_string(&signed).expect("json"),
        &key(7).verifying_key(),
    )
    .expect_err("untrusted");
    assert!(matches!(err, EvidenceError::BadSignature { .. }));
}

#[test]
fn canonical_json_ignores_key_order_and_whitespace() {
    let a: serde_json::Value =
        serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "s"}"#).expect("json");
    let b: serde_json::Value =
        serde_json::from_str(r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#).expect("json");
    assert_eq!(canonical_json(&a), canonical_json(&b));
    assert_eq!(canonical_json(&a), r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
}

#[test]
fn keys_load_from_files_and_bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("site.key");
    std::fs::write(&secret, format!("{}\n", hex::encode([7u8; 32]))).expect("write");
    let loaded = load_signing_key(&secret).expect("loads");
    assert_eq!(loaded.to_bytes(), key(7).to_bytes());
    let public = hex::encode(key(7).verifying_key().as_bytes());
    assert_eq!(
        load_public_key(&public).expect("hex key"),
        key(7).verifying_key()
    );
    let public_file = dir.path().join("site.pub");
    std::fs::write(&public_file, &public).expect("write");
    assert_eq!(
        load_public_key(public_file.to_str().expect("utf8")).expect("file"),
        key(7).verifying_key()
    );

    std::fs::write(&secret, "not hex").expect("write");
    assert!(matches!(
        load_signing_key(&secret),
        Err(EvidenceError::BadKey { .. })
    ));
    assert!(matches!(
        verify("{", &key(7).verifying_key()),
        Err(EvidenceError::Malformed { .. })
    ));
}

#[test]
fn the_erase_before_the_lease_is_signed_and_checked() {
    use kiln_health::erasure::{self, ErasedBeforeLease, ErasedDevice, ErasureStatus};
    let mut with_erase = record();
    with_erase.erased_before_lease = Some(ErasedBeforeLease {
        status: ErasureStatus::Erased,
        after_lease: Some(4),
        devices: vec![ErasedDevice {
            device: "/dev/nvme0n1".into(),
            serial: "S1".into(),
            method: Some("nvme_format_crypto".into()),
            nist: Some("purge".into()),
            started_at: "2026-12-03T10:00:00Z".into(),
            finished_at: "2026-12-03T10:00:05Z".into(),
            verified: true,
            result: "ok".into(),
            record_sha256: "cd".repeat(32),
        }],
        summary: "nvme0n1: nvme_format_crypto (purge), verified".into(),
    });
    let signed = sign(&with_erase, &key(7)).expect("signs");
    let text = serde_json::to_string(&signed).expect("json");
    let back = verify(&text, &key(7).verifying_key()).expect("verifies");
    assert_eq!(back, with_erase);
    let erased = back.erased_before_lease.expect("erase signed");
    assert_eq!(erasure::check(&erased), Ok(()));
    // Marking the erase verified after signing breaks the signature.
    let mut tampered = signed.clone();
    tampered.record["erased_before_lease"]["devices"][0]["verified"] = json!(false);
    let tampered = serde_json::to_string(&tampered).expect("json");
    assert!(verify(&tampered, &key(7).verifying_key()).is_err());
    // A record without it (made before kiln signed erasures) keeps its signature bytes.
    let plain = sign(&record(), &key(7)).expect("signs");
    assert!(plain.record.get("erased_before_lease").is_none());
}
