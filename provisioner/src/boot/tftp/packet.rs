//! TFTP packets (RFC 1350, option extension RFC 2347): parsing what clients send and encoding what the server
//! sends. Parsing never panics: anything malformed is a [`PacketError`] saying what is wrong.

use std::fmt;

/// Largest TFTP packet kiln reads: 4-byte header plus the largest block size RFC 2348 allows.
pub const MAX_PACKET: usize = 4 + 65464;

/// A TFTP error code (RFC 1350 section 5, RFC 2347 code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    Undefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTransferId,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation refused; also how EDK2 ends a size probe.
    OptionRefused,
    /// Any other code a peer sent.
    Other(u16),
}

impl ErrorCode {
    /// The code on the wire.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::Undefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionRefused => 8,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_u16(code: u16) -> Self {
        match code {
            0 => ErrorCode::Undefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            other => ErrorCode::Other(other),
        }
    }
}

/// Transfer mode named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `octet`: bytes as they are (what every boot client uses).
    Octet,
    /// `netascii`: served byte for byte as well; boot files are binary and kiln does not translate line ends.
    NetAscii,
}

/// A request's option (RFC 2347), name lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOption {
    /// Option name, lowercased (`tsize`, `blksize`, `timeout`, `windowsize`, …).
    pub name: String,
    /// Option value as sent.
    pub value: String,
}

/// A packet a TFTP peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// RRQ: read a file.
    ReadRequest {
        /// File name as the client sent it (not yet checked against the root).
        filename: String,
        /// Transfer mode.
        mode: Mode,
        /// Options in the order sent.
        options: Vec<RequestOption>,
    },
    /// WRQ: write a file (kiln refuses these: the server is read-only).
    WriteRequest {
        /// File name as sent.
        filename: String,
    },
    /// DATA (servers send these; a client sending one is an illegal operation here).
    Data {
        /// Block number.
        block: u16,
        /// Payload length.
        len: usize,
    },
    /// ACK of a block (0 acknowledges an OACK).
    Ack {
        /// Block number.
        block: u16,
    },
    /// ERROR: the peer ends the transfer.
    Error {
        /// Error code.
        code: ErrorCode,
        /// Message, lossily decoded.
        message: String,
    },
    /// OACK (servers send these).
    OptionAck,
}

/// Why a datagram is not a TFTP packet kiln can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than the smallest packet.
    #[error("packet of {len} bytes is too short for TFTP")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The opcode is not 1–6.
    #[error("unknown TFTP opcode {0}")]
    UnknownOpcode(u16),
    /// A string field has no terminating NUL.
    #[error("the {field} field is not NUL-terminated")]
    Unterminated {
        /// Which field.
        field: &'static str,
    },
    /// A string field is not UTF-8 (file names and options must be text).
    #[error("the {field} field is not valid UTF-8")]
    NotText {
        /// Which field.
        field: &'static str,
    },
    /// A mode other than octet or netascii (e.g. the obsolete `mail`).
    #[error("unsupported transfer mode {0:?}")]
    BadMode(String),
    /// An option name with no value.
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
    /// The file name is empty.
    #[error("empty file name")]
    EmptyFilename,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Octet => "octet",
            Mode::NetAscii => "netascii",
        })
    }
}

/// Splits NUL-terminated strings off the front of `bytes`.
struct Strings<'a> {
    rest: &'a [u8],
}

impl<'a> Strings<'a> {
    fn next(&mut self, field: &'static str) -> Result<&'a str, PacketError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PacketError::Unterminated { field })?;
        let text =
            std::str::from_utf8(&self.rest[..end]).map_err(|_| PacketError::NotText { field })?;
        self.rest = &self.rest[end + 1..];
        Ok(text)
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// Reads one TFTP packet.
pub fn parse(bytes: &[u8]) -> Result<Packet, PacketError> {
    if bytes.len() < 4 {
        return Err(PacketError::Truncated { len: bytes.len() });
    }
    let opcode = be16(bytes);
    let body = &bytes[2..];
    match opcode {
        1 | 2 => {
            let mut strings = Strings { rest: body };
            let filename = strings.next("filename")?.to_string();
            if filename.is_empty() {
                return Err(PacketError::EmptyFilename);
            }
            let mode = match strings.next("mode")?.to_ascii_lowercase().as_str() {
                "octet" => Mode::Octet,
                "netascii" => Mode::NetAscii,
                other => return Err(PacketError::BadMode(other.to_string())),
            };
            if opcode == 2 {
                return Ok(Packet::WriteRequest { filename });
            }
            let mut options = Vec::new();
            while !strings.is_empty() {
                let name = strings.next("option name")?;
                if strings.is_empty() {
                    return Err(PacketError::OptionWithoutValue(name.to_string()));
                }
                let value = strings.next("option value")?;
                options.push(RequestOption {
                    name: name.to_ascii_lowercase(),
                    value: value.to_string(),
                });
            }
            Ok(Packet::ReadRequest {
                filename,
                mode,
                options,
            })
        }
        3 => Ok(Packet::Data {
            block: be16(body),
            len: body.len() - 2,
        }),
        4 => Ok(Packet::Ack { block: be16(body) }),
        5 => {
            let code = ErrorCode::from_u16(be16(body));
            let raw = &body[2..];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            Ok(Packet::Error {
                code,
                message: String::from_utf8_lossy(&raw[..end]).into_owned(),
            })
        }
        6 => Ok(Packet::OptionAck),
        other => Err(PacketError::UnknownOpcode(other)),
    }
}

/// Encodes a DATA packet header followed by `payload` into `out` (cleared first).
pub fn encode_data(out: &mut Vec<u8>, block: u16, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&3u16.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Encodes an ERROR packet.
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&5u16.to_be_bytes());
    out.extend_from_slice(&code.as_u16().to_be_bytes());
    out.extend_from_slice(message.replace('\0', " ").as_bytes());
    out.push(0);
    out
}

/// Encodes an OACK with the accepted options, in the order given.
pub fn encode_oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut out = 6u16.to_be_bytes().to_vec();
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Encodes a read request (used by tests and tools acting as a client).
pub fn encode_read_request(filename: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = 1u16.to_be_bytes().to_vec();
    for part in [filename, "octet"] {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Encodes an ACK (used by tests and tools acting as a client).
pub fn encode_ack(block: u16) -> Vec<u8> {
    let mut out = 4u16.to_be_bytes().to_vec();
    out.extend_from_slice(&block.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_request_with_options() {
        let bytes = encode_read_request(
            "ipxe.efi",
            &[("tsize", "0"), ("BLKSIZE", "1468"), ("windowsize", "4")],
        );
        let packet = parse(&bytes);
        assert_eq!(
            packet,
            Ok(Packet::ReadRequest {
                filename: "ipxe.efi".into(),
                mode: Mode::Octet,
                options: vec![
                    RequestOption {
                        name: "tsize".into(),
                        value: "0".into()
                    },
                    RequestOption {
                        name: "blksize".into(),
                        value: "1468".into()
                    },
                    RequestOption {
                        name: "windowsize".into(),
                        value: "4".into()
                    },
                ],
            })
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse(&[0, 1]), Err(PacketError::Truncated { len: 2 }));
        assert_eq!(parse(&[0, 9, 0, 0]), Err(PacketError::UnknownOpcode(9)));
        assert_eq!(
            parse(b"\0\x01file"),
            Err(PacketError::Unterminated { field: "filename" })
        );
        assert_eq!(
            parse(b"\0\x01file\0mail\0"),
            Err(PacketError::BadMode("mail".into()))
        );
        assert_eq!(
            parse(b"\0\x01file\0octet\0tsize\0"),
            Err(PacketError::OptionWithoutValue("tsize".into()))
        );
        assert_eq!(parse(b"\0\x01\0octet\0"), Err(PacketError::EmptyFilename));
        assert_eq!(
            parse(b"\0\x01\xff\xfe\0octet\0"),
            Err(PacketError::NotText { field: "filename" })
        );
    }

    #[test]
    fn error_and_ack_round_trip() {
        assert_eq!(
            parse(&encode_error(ErrorCode::OptionRefused, "abort")),
            Ok(Packet::Error {
                code: ErrorCode::OptionRefused,
                message: "abort".into()
            })
        );
        assert_eq!(parse(&encode_ack(65535)), Ok(Packet::Ack { block: 65535 }));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_requests(
            op in 1u16..=2,
            body in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..200),
        ) {
            let mut bytes = op.to_be_bytes().to_vec();
            bytes.extend(body);
            if let Ok(Packet::ReadRequest { filename, .. }) = parse(&bytes) {
                prop_assert!(!filename.is_empty());
                prop_assert!(!filename.contains('\0'));
            }
        }
    }
}
