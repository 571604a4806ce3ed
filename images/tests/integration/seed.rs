//! cloud-init NoCloud seeds: exact file contents, and values that could break YAML stay inert.

use kiln_images::seed::{AgentService, NoCloudSeed, SeedNic};

fn seed() -> NoCloudSeed {
    NoCloudSeed {
        instance_id: "SN1-2-ab12cd".into(),
        hostname: "h1-r1-s2".into(),
        ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3Nza site@kiln\n".into()],
        agent: Some(AgentService {
            binary: "/usr/local/bin/kiln-agent".into(),
            provisioner_url: "http://10.0.0.1:8080".into(),
            node_token: "tok-123".into(),
        }),
        nics: vec![
            SeedNic {
                name: "prov0".into(),
                mac: "3c:ec:ef:01:02:03".parse().expect("mac"),
                address: None,
                gateway: None,
                mtu: None,
            },
            SeedNic {
                name: "data0".into(),
                mac: "58:a2:e1:00:00:01".parse().expect("mac"),
                address: Some("10.8.0.5/24".into()),
                gateway: Some("10.8.0.1".into()),
                mtu: Some(9000),
            },
        ],
    }
}

#[test]
fn meta_data_and_network_config() {
    let seed = seed();
    assert_eq!(
        seed.meta_data(),
        "instance-id: \"SN1-2-ab12cd\"\nlocal-hostname: \"h1-r1-s2\"\n"
    );
    assert_eq!(
        seed.network_config(),
        "version: 2\nethernets:\n  \"prov0\":\n    match:\n      macaddress: \"3c:ec:ef:01:02:03\"\n    set-name: \"prov0\"\n    dhcp4: true\n  \"data0\":\n    match:\n      macaddress: \"58:a2:e1:00:00:01\"\n    set-name: \"data0\"\n    dhcp4: false\n    addresses: [\"10.8.0.5/24\"]\n    routes:\n      - to: default\n        via: \"10.8.0.1\"\n    mtu: 9000\n"
    );
}

#[test]
fn user_data_installs_keys_and_the_agent() {
    let text = seed().user_data();
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    assert!(
        text.contains("ssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza site@kiln\"\n"),
        "{text}"
    );
    assert!(text.contains("    content: \"KILN_PROVISIONER_URL=http://10.0.0.1:8080\\nKILN_NODE_TOKEN=tok-123\\n\"\n"), "{text}");
    assert!(
        text.contains("ExecStart=/usr/local/bin/kiln-agent run"),
        "{text}"
    );
    assert!(
        text.contains("  - [\"systemctl\", \"enable\", \"--now\", \"kiln-agent.service\"]\n"),
        "{text}"
    );

    let mut hostile = seed();
    hostile.hostname = "x\"\nruncmd: [rm -rf /]".into();
    hostile.agent = None;
    let meta = hostile.meta_data();
    assert_eq!(
        meta.lines().count(),
        2,
        "a newline in a value cannot add a key: {meta}"
    );
    assert!(
        meta.contains("local-hostname: \"x\\\"\\nruncmd: [rm -rf /]\""),
        "{meta}"
    );
    assert!(
        !hostile.user_data().contains("write_files"),
        "no agent, no service"
    );
}

#[test]
fn writes_the_three_files() {
    let dir = tempfile::tempdir().expect("dir");
    let seed = seed();
    seed.write_to_dir(&dir.path().join("cidata"))
        .expect("write");
    for (name, content) in seed.files() {
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cidata").join(name)).expect("read"),
            content
        );
    }
}
