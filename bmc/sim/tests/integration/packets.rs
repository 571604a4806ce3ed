//! Property tests of the RMCP / RMCP+ packet code, and garbage thrown at a live IPMI responder.

use std::time::Duration;

use kiln_bmc::ipmi::IpmiClient;
use kiln_bmc::{Bmc, Credentials, PowerState};
use kiln_bmc_sim::ipmi::packet::{
    Datagram, SessionKeys, build_response, build_v20, checksum, parse, parse_request, payload,
};
use kiln_bmc_sim::{SimFleet, SimFleetConfig};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn request_bytes(netfn: u8, cmd: u8, seq: u8, data: &[u8]) -> Vec<u8> {
    let mut message = vec![0x20, netfn << 2];
    message.push(checksum(&message));
    let start = message.len();
    message.extend_from_slice(&[0x81, seq << 2, cmd]);
    message.extend_from_slice(data);
    let sum = checksum(&message[start..]);
    message.push(sum);
    message
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes, 12);
        let _ = parse_request(&bytes);
        let keys = SessionKeys::from_sik(&[7u8; 20]);
        let _ = keys.decrypt(&bytes);
        let _ = keys.verify(&bytes, &bytes);
    }

    #[test]
    fn rmcp_prefixed_garbage_never_panics(tail in prop::collection::vec(any::<u8>(), 0..120), auth in any::<u8>(), class in any::<u8>()) {
        let mut bytes = vec![0x06, 0x00, 0xff, class, auth];
        bytes.extend_from_slice(&tail);
        let _ = parse(&bytes, 12);
        bytes[3] = 0x07;
        bytes[4] = 0x06;
        let _ = parse(&bytes, 12);
    }

    #[test]
    fn encrypted_authenticated_packets_round_trip(
        sik in prop::array::uniform20(any::<u8>()),
        body in prop::collection::vec(any::<u8>(), 0..200),
        session in any::<u32>(),
        sequence in any::<u32>(),
    ) {
        let keys = SessionKeys::from_sik(&sik);
        let datagram = build_v20(payload::IPMI, session, sequence, &body, Some(&keys));
        match parse(&datagram, 12) {
            Ok(Datagram::V20 { payload_type, encrypted, authenticated, session_id, sequence: seq, payload: sealed, signed, auth_code }) => {
                prop_assert_eq!(payload_type, payload::IPMI);
                prop_assert!(encrypted && authenticated);
                prop_assert_eq!((session_id, seq), (session, sequence));
                prop_assert!(keys.verify(signed, auth_code));
                prop_assert_eq!(keys.decrypt(sealed).expect("decrypts"), body);
            }
            other => prop_assert!(false, "unexpected parse: {:?}", other),
        }
    }

    #[test]
    fn tampered_packets_fail_the_integrity_check(sik in prop::array::uniform20(any::<u8>()), flip in 4usize..40) {
        let keys = SessionKeys::from_sik(&sik);
        let mut datagram = build_v20(payload::IPMI, 1, 2, b"hello ipmi", Some(&keys));
        let index = flip.min(datagram.len() - 13);
        datagram[index] ^= 0x01;
        if let Ok(Datagram::V20 { signed, auth_code, .. }) = parse(&datagram, 12) {
            prop_assert!(!keys.verify(signed, auth_code));
        }
    }

    #[test]
    fn requests_round_trip(netfn in 0u8..0x30, cmd in any::<u8>(), seq in 0u8..64, data in prop::collection::vec(any::<u8>(), 0..40)) {
        let netfn = netfn & !1;
        let request = parse_request(&request_bytes(netfn, cmd, seq, &data)).expect("valid request");
        prop_assert_eq!((request.netfn, request.cmd, request.rq_seq), (netfn, cmd, seq));
        prop_assert_eq!(&request.data, &data);
        let response = build_response(&request, 0, &[1, 2, 3]);
        prop_assert_eq!(checksum(&response[..2]), response[2]);
        prop_assert_eq!(checksum(&response[3..response.len() - 1]), response[response.len() - 1]);
    }
}

#[test]
fn a_bad_checksum_is_refused() {
    let mut bytes = request_bytes(0x06, 0x01, 1, &[]);
    bytes[2] ^= 0xff;
    assert!(parse_request(&bytes).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_survives_garbage_and_keeps_answering() {
    let fleet = SimFleet::start(SimFleetConfig::default())
        .await
        .expect("fleet");
    let port = fleet.endpoints()[0].ipmi_port.expect("IPMI half");
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(any::<u8>(), 0..200);
    for _ in 0..300 {
        let mut garbage = strategy.new_tree(&mut runner).expect("value").current();
        if garbage.len() > 5 && garbage[0] % 2 == 0 {
            // Half of them look like RMCP+ to get past the first checks.
            let payload_type = garbage[5] & 0x3f;
            garbage[..6].copy_from_slice(&[0x06, 0x00, 0xff, 0x07, 0x06, payload_type]);
        }
        socket
            .send_to(&garbage, ("127.0.0.1", port))
            .await
            .expect("send");
    }
    let client = IpmiClient::new(
        "127.0.0.1",
        port,
        Credentials::new("admin", "password"),
        // Generous: the garbage is still being read when the machine is loaded (the CI runs every test at once).
        Duration::from_secs(5),
    )
    .expect("client");
    assert_eq!(
        client.power_state().await.expect("still answering"),
        PowerState::Off
    );
}
