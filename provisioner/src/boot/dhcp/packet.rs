//! Reading DHCP requests safely and recognising boot clients: PXE firmware by architecture (option 93, or the
//! vendor class `PXEClient:Arch:NNNNN`) and iPXE by its user class.

use dhcproto::v4::{self, DhcpOption, OptionCode};
use dhcproto::{Decodable, Decoder};
use kiln_inventory::MacAddr;

/// Why a datagram is not a DHCP request kiln answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpPacketError {
    /// The DHCP codec refused it.
    #[error("not a valid DHCP message: {0}")]
    Decode(String),
    /// An option whose length kiln's codec cannot read safely.
    #[error("option {code} has an invalid length {len}")]
    BadOptionLength {
        /// Option code.
        code: u8,
        /// Length found.
        len: usize,
    },
    /// A BOOTREPLY (sent by servers, not clients).
    #[error("a BOOTREPLY is not a request")]
    NotARequest,
    /// Not Ethernet with a 6-byte hardware address.
    #[error("hardware type {htype} with address length {hlen} is not Ethernet")]
    NotEthernet {
        /// Hardware type.
        htype: u8,
        /// Hardware address length.
        hlen: u8,
    },
    /// No DHCP message type option (plain BOOTP is not served).
    #[error("no DHCP message type (BOOTP is not served)")]
    NoMessageType,
}

/// Offset of the options in a DHCP message (after the fixed header and the magic cookie).
const OPTIONS_AT: usize = 240;

/// Checks the lengths of options whose decoding in `dhcproto` asserts rather than failing (RapidCommit,
/// ClientNetworkInterface, ClientFQDN, the bulk-leasequery times and status): a wrong length there must be a
/// refused packet, not a panic.
fn check_option_lengths(bytes: &[u8]) -> Result<(), DhcpPacketError> {
    let mut at = OPTIONS_AT;
    while at < bytes.len() {
        let code = bytes[at];
        match code {
            0 => {
                at += 1;
                continue;
            }
            255 => return Ok(()),
            _ => {}
        }
        let Some(&len) = bytes.get(at + 1) else {
            return Ok(()); // truncated: the codec reports it
        };
        let len = usize::from(len);
        let ok = match code {
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            151 => len >= 1,
            152..=155 => len == 4,
            _ => true,
        };
        if !ok {
            return Err(DhcpPacketError::BadOptionLength { code, len });
        }
        at += 2 + len;
    }
    Ok(())
}

/// Decodes a client's DHCP message. Never panics.
pub fn decode_request(bytes: &[u8]) -> Result<v4::Message, DhcpPacketError> {
    check_option_lengths(bytes)?;
    // Belt and braces: the codec is third-party, and a packet off the wire must never take the server down.
    let decoded = std::panic::catch_unwind(|| v4::Message::decode(&mut Decoder::new(bytes)))
        .map_err(|_| DhcpPacketError::Decode("the codec panicked".into()))?;
    let message = decoded.map_err(|err| DhcpPacketError::Decode(err.to_string()))?;
    if message.opcode() != v4::Opcode::BootRequest {
        return Err(DhcpPacketError::NotARequest);
    }
    if message.htype() != v4::HType::Eth || message.hlen() != 6 {
        return Err(DhcpPacketError::NotEthernet {
            htype: u8::from(message.htype()),
            hlen: message.hlen(),
        });
    }
    if message.opts().msg_type().is_none() {
        return Err(DhcpPacketError::NoMessageType);
    }
    Ok(message)
}

/// The client's MAC (chaddr); [`decode_request`] has checked it is a 6-byte Ethernet address.
pub fn client_mac(message: &v4::Message) -> MacAddr {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&message.chaddr()[..6]);
    MacAddr(mac)
}

/// Firmware a PXE client runs, which decides the iPXE binary it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientArch {
    /// Legacy BIOS (arch 0).
    Bios,
    /// 32-bit x86 UEFI (arch 6).
    X86Efi,
    /// x86-64 UEFI (arch 7, or 9 which some firmware sends).
    X64Efi,
    /// ARM64 UEFI (arch 11).
    Arm64Efi,
    /// An architecture kiln has no iPXE binary for.
    Other(u16),
}

impl ClientArch {
    /// From the RFC 4578 architecture number.
    pub fn from_code(code: u16) -> Self {
        match code {
            0 => ClientArch::Bios,
            6 => ClientArch::X86Efi,
            7 | 9 => ClientArch::X64Efi,
            11 => ClientArch::Arm64Efi,
            other => ClientArch::Other(other),
        }
    }

    /// A short name for logs and the inventory.
    pub fn name(self) -> String {
        match self {
            ClientArch::Bios => "bios".into(),
            ClientArch::X86Efi => "x86-efi".into(),
            ClientArch::X64Efi => "x86_64-efi".into(),
            ClientArch::Arm64Efi => "arm64-efi".into(),
            ClientArch::Other(code) => format!("arch-{code}"),
        }
    }
}

/// What a request says about the booting client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootClient {
    /// Option 60, lossily decoded.
    pub vendor_class: Option<String>,
    /// Vendor class starts with `PXEClient`: PXE firmware (or iPXE, which sends it too).
    pub pxe: bool,
    /// User class (option 77) names iPXE: the client can fetch an HTTP script.
    pub ipxe: bool,
    /// Architecture from option 93, else from the vendor class.
    pub arch: Option<ClientArch>,
    /// Option 97 (client machine UUID), echoed back to PXE clients as the PXE spec asks.
    pub machine_id: Option<Vec<u8>>,
}

/// Reads the boot-related options of a request.
pub fn boot_client(message: &v4::Message) -> BootClient {
    let opts = message.opts();
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(bytes)) => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => None,
    };
    let pxe = vendor_class
        .as_deref()
        .is_some_and(|class| class.starts_with("PXEClient"));
    let ipxe = match opts.get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(bytes)) => bytes.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(arch)) => {
            Some(ClientArch::from_code(u16::from(*arch)))
        }
        _ => vendor_class.as_deref().and_then(arch_from_vendor_class),
    };
    let machine_id = match opts.get(OptionCode::ClientMachineIdentifier) {
        Some(DhcpOption::ClientMachineIdentifier(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    BootClient {
        vendor_class,
        pxe,
        ipxe,
        arch: if pxe || ipxe { arch } else { None },
        machine_id,
    }
}

/// `PXEClient:Arch:00007:UNDI:003000` → x86-64 UEFI.
fn arch_from_vendor_class(class: &str) -> Option<ClientArch> {
    let rest = class.strip_prefix("PXEClient:Arch:")?;
    let digits = rest.get(..5)?;
    digits.parse::<u16>().ok().map(ClientArch::from_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Encodable, Encoder};
    use proptest::prelude::*;

    fn discover(options: Vec<DhcpOption>) -> Vec<u8> {
        let mut msg = v4::Message::new(
            [0, 0, 0, 0].into(),
            [0, 0, 0, 0].into(),
            [0, 0, 0, 0].into(),
            [0, 0, 0, 0].into(),
            &[0x52, 0x54, 0, 1, 2, 3],
        );
        msg.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
        for option in options {
            msg.opts_mut().insert(option);
        }
        let mut out = Vec::new();
        msg.encode(&mut Encoder::new(&mut out)).expect("encode");
        out
    }

    #[test]
    fn recognises_boot_clients() {
        let uefi = decode_request(&discover(vec![DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
        )]))
        .expect("decode");
        let client = boot_client(&uefi);
        assert!(client.pxe && !client.ipxe);
        assert_eq!(client.arch, Some(ClientArch::X64Efi));
        assert_eq!(client_mac(&uefi).to_string(), "52:54:00:01:02:03");

        let ipxe_bios = decode_request(&discover(vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            DhcpOption::UserClass(b"iPXE".to_vec()),
            DhcpOption::ClientSystemArchitecture(v4::Architecture::Intelx86PC),
        ]))
        .expect("decode");
        let client = boot_client(&ipxe_bios);
        assert!(client.pxe && client.ipxe);
        assert_eq!(client.arch, Some(ClientArch::Bios));

        let plain = decode_request(&discover(vec![])).expect("decode");
        assert_eq!(boot_client(&plain), BootClient::default());
    }

    #[test]
    fn refuses_bad_packets() {
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[1u8; 100]).is_err());
        let mut bytes = discover(vec![]);
        // Option 94 with length 1 instead of 3, inserted before END.
        let end = bytes.len() - 1;
        bytes.splice(end..end, [94, 1, 1]);
        assert_eq!(
            decode_request(&bytes),
            Err(DhcpPacketError::BadOptionLength { code: 94, len: 1 })
        );
        let mut reply = discover(vec![]);
        reply[0] = 2;
        assert_eq!(decode_request(&reply), Err(DhcpPacketError::NotARequest));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_request(&bytes);
        }

        #[test]
        fn decode_never_panics_on_garbled_options(
            options in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut bytes = discover(vec![]);
            bytes.truncate(OPTIONS_AT);
            bytes.extend(options);
            if let Ok(message) = decode_request(&bytes) {
                let _ = boot_client(&message);
                prop_assert_eq!(client_mac(&message).0, [0x52, 0x54, 0, 1, 2, 3]);
            }
        }
    }
}
