//! Manifest parsing: every problem reported with its line number.

use kiln_inventory::{ManifestErrors, ManifestFormat, parse_manifest};

use crate::support::CSV_HEADER;

fn csv_errors(body: &str) -> ManifestErrors {
    parse_manifest(
        &format!("{CSV_HEADER}\n{body}"),
        ManifestFormat::Csv,
        &|_| None,
    )
    .expect_err("should fail")
}

#[test]
fn csv_problems_have_line_numbers() {
    let errors = csv_errors(
        "\
H1,R1,1,S-1,h100-sxm-80gb,10.0.0.1,redfish,admin,pw,02:00:00:00:00:01
# a comment line is skipped
H1,R1,2,S-1,h100-sxm-80gb,10.0.0.2,redfish,admin,pw,02:00:00:00:00:02
H1,R1,3,S-3,h100-sxm-80gb,10.0.0.3,redfish,admin,pw,02:00:00:00:00:01
H1,R1,4,S-4,h100-sxm-80gb,10.0.0.4,smoke-signals,admin,pw,02:00:00:00:00:04
H1,R1,x,S-5,h100-sxm-80gb,10.0.0.5,ipmi,admin,pw,not-a-mac
H1,R1,6,S-6,h100-sxm-80gb,10.0.0.6,ipmi,admin,,02:00:00:00:00:06
H1,R1,7,S-7,h100-sxm-80gb
H1,R1,1,S-8,h100-sxm-80gb,10.0.0.8,ipmi,admin,pw,02:00:00:00:00:08
",
    );
    let found: Vec<(usize, &str)> = errors
        .0
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    let expect = [
        (4, "serial S-1 already given on line 2"),
        (5, "boot MAC 02:00:00:00:00:01 already given on line 2"),
        (6, "unknown BMC protocol \"smoke-signals\""),
        (7, "slot \"x\" is not a non-negative whole number"),
        (7, "boot_mac: \"not-a-mac\" is not a MAC address"),
        (8, "missing bmc_password or bmc_password_env"),
        (9, "5 fields where the header has 10"),
        (10, "hall H1 rack R1 slot 1 already given on line 2"),
    ];
    for (line, text) in expect {
        assert!(
            found.iter().any(|(l, m)| *l == line && m.contains(text)),
            "missing line {line}: {text}\n{errors}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{errors}");
}

#[test]
fn unknown_columns_and_empty_manifests() {
    let errors = parse_manifest(
        "hall,rack,slot,serial,sku,bmc_pasword\n",
        ManifestFormat::Csv,
        &|_| None,
    )
    .expect_err("typo column");
    assert!(
        errors
            .to_string()
            .contains("line 1: unknown column(s) [\"bmc_pasword\"]"),
        "{errors}"
    );
    let errors = parse_manifest(&format!("{CSV_HEADER}\n"), ManifestFormat::Csv, &|_| None)
        .expect_err("empty");
    assert!(errors.to_string().contains("lists no nodes"), "{errors}");
}

#[test]
fn password_env_must_exist() {
    let text = "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password_env,boot_mac\n\
                H1,R1,1,S-1,h100-sxm-80gb,10.0.0.1,redfish,admin,RACK7_PASS,02:00:00:00:00:01\n";
    let errors = parse_manifest(text, ManifestFormat::Csv, &|_| None).expect_err("unset variable");
    assert!(
        errors
            .to_string()
            .contains("line 2: bmc_password_env names RACK7_PASS, which is not set"),
        "{errors}"
    );
    let rows = parse_manifest(text, ManifestFormat::Csv, &|_| Some("s3cret".into())).expect("set");
    assert_eq!(rows[0].bmc_password.expose(), "s3cret");
}

#[test]
fn toml_problems_have_line_numbers() {
    let text = "[[node]]\nhall = \"H1\"\nrack = \"R1\"\nslot = 1\nserial = \"A\"\nsku = \"h100-sxm-80gb\"\n\
                bmc_address = \"x\"\nbmc_protocol = \"redfish\"\nbmc_user = \"u\"\nbmc_password = \"p\"\n\
                boot_mac = \"02:00:00:00:00:01\"\n\n[[node]]\nhall = \"H1\"\nrack = \"R1\"\nslot = -2\n";
    let errors =
        parse_manifest(text, ManifestFormat::Toml, &|_| None).expect_err("second node is bad");
    let text_errors = errors.to_string();
    assert!(
        text_errors.contains("line 13: slot \"-2\" is not a non-negative whole number"),
        "{text_errors}"
    );
    assert!(
        text_errors.contains("line 13: missing serial"),
        "{text_errors}"
    );
    let errors = parse_manifest(
        "[[node]]\nhall = \"H1\"\ncolour = \"red\"\n",
        ManifestFormat::Toml,
        &|_| None,
    )
    .expect_err("unknown field");
    assert!(errors.to_string().contains("colour"), "{errors}");
    let errors =
        parse_manifest("[[node]\n", ManifestFormat::Toml, &|_| None).expect_err("not toml");
    assert!(
        errors.to_string().contains("line 1: not a valid manifest"),
        "{errors}"
    );
}
