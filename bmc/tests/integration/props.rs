//! Property tests: the JSON models and small parsers never panic and keep their promises on any input.

use kiln_bmc::redfish::CertFingerprint;
use kiln_bmc::redfish::model::{
    BootSource, Collection, ComputerSystem, ErrorBody, LogEntryCollection, Manager, ResetType,
    ServiceRoot, Task, VirtualMedia, parse_resource,
};
use kiln_bmc::redfish::normalize_mac;
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[A-Za-z@#.]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "On",
            "Off",
            "PoweringOn",
            "Pxe",
            "Once",
            "UEFI",
            "Exception"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop::sample::select(vec![
        "PowerState",
        "powerstate",
        "Boot",
        "Actions",
        "#ComputerSystem.Reset",
        "target",
        "ResetType@Redfish.AllowableValues",
        "Members",
        "@odata.id",
        "Image",
        "Inserted",
        "TaskState",
        "error",
        "BootSourceOverrideTarget@Redfish.AllowableValues",
        "Oem",
        "x",
    ]);
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|pairs| Value::Object(
                pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn parse_all(bytes: &[u8]) {
    let _ = parse_resource::<ServiceRoot>(bytes);
    let _ = parse_resource::<Collection>(bytes);
    let _ = parse_resource::<ComputerSystem>(bytes);
    let _ = parse_resource::<Manager>(bytes);
    let _ = parse_resource::<VirtualMedia>(bytes);
    let _ = parse_resource::<LogEntryCollection>(bytes);
    let _ = parse_resource::<Task>(bytes);
    let _ = parse_resource::<ErrorBody>(bytes).map(|e| e.summary());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&bytes);
    }

    #[test]
    fn arbitrary_json_objects_always_parse(value in arb_json()) {
        let bytes = serde_json::to_vec(&value).expect("serializes");
        parse_all(&bytes);
        // Every object is accepted leniently; only non-objects are errors.
        prop_assert_eq!(parse_resource::<ComputerSystem>(&bytes).is_ok(), value.is_object());
    }

    #[test]
    fn enum_strings_round_trip(text in "[A-Za-z]{0,16}") {
        let parsed = ResetType::parse(&text);
        prop_assert!(parsed.as_str().eq_ignore_ascii_case(&text));
        let target = BootSource::parse(&text);
        prop_assert!(target.as_str().eq_ignore_ascii_case(&text));
    }

    #[test]
    fn macs_normalize_to_one_form(octets in prop::array::uniform6(any::<u8>()), sep in prop::sample::select(vec![":", "-"]), upper in any::<bool>()) {
        let text: Vec<String> = octets.iter().map(|o| if upper { format!("{o:02X}") } else { format!("{o:02x}") }).collect();
        let expected: Vec<String> = octets.iter().map(|o| format!("{o:02x}")).collect();
        prop_assert_eq!(normalize_mac(&text.join(sep)), Some(expected.join(":")));
    }

    #[test]
    fn mac_garbage_is_refused_without_panic(text in ".{0,40}") {
        if let Some(mac) = normalize_mac(&text) {
            prop_assert_eq!(mac.len(), 17);
        }
    }

    #[test]
    fn fingerprints_round_trip(bytes in prop::array::uniform32(any::<u8>())) {
        let fingerprint = CertFingerprint(bytes);
        prop_assert_eq!(fingerprint.to_string().parse::<CertFingerprint>().ok(), Some(fingerprint));
    }
}

proptest! {
    /// Any bytes as a FRU image: an error or a decoding, never a panic; and a valid header with garbage areas
    /// still decodes (the bad areas are skipped).
    #[test]
    fn fru_parser_never_panics(mut image in prop::collection::vec(any::<u8>(), 0..600), offsets in any::<[u8; 3]>()) {
        let _ = kiln_bmc::ipmi::fru::parse_fru(&image);
        if image.len() >= 8 {
            image[0] = 0x01;
            image[1] = 0;
            image[2..5].copy_from_slice(&offsets);
            image[5] = 0;
            image[6] = 0;
            image[7] = 0u8.wrapping_sub(image[..7].iter().fold(0u8, |s, b| s.wrapping_add(*b)));
            prop_assert!(kiln_bmc::ipmi::fru::parse_fru(&image).is_ok());
        }
    }
}
