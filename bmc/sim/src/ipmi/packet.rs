//! RMCP / IPMI 1.5 / RMCP+ (IPMI 2.0) datagram parsing and building, as the BMC side sees them. Parsing never
//! panics: any malformed datagram is a [`PacketError`].

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// RMCP header of an IPMI datagram: version 6, reserved, sequence 0xFF (no ACK), class IPMI.
pub const RMCP_IPMI: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// RMCP class of ASF messages (presence ping).
pub const RMCP_CLASS_ASF: u8 = 0x06;
/// Session header auth type that marks an RMCP+ (IPMI 2.0) packet.
pub const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;

/// RMCP+ payload types kiln's simulator handles.
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP Message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP Message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP Message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP Message 4.
    pub const RAKP4: u8 = 0x15;
}

/// Why a datagram could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its headers say.
    #[error("datagram truncated: {0}")]
    Truncated(&'static str),
    /// Not an RMCP IPMI-class datagram.
    #[error("not an RMCP IPMI datagram")]
    NotRmcp,
    /// A checksum did not match.
    #[error("bad checksum in the IPMI message")]
    Checksum,
    /// An auth type kiln does not speak (IPMI 1.5 with authentication).
    #[error("unsupported session auth type {0:#04x}")]
    AuthType(u8),
    /// The integrity pad or next-header bytes are wrong.
    #[error("bad integrity trailer")]
    Trailer,
}

/// A parsed RMCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// An ASF presence ping (or other ASF message), with its message tag.
    Asf {
        /// ASF message type.
        message_type: u8,
        /// Message tag to echo.
        tag: u8,
    },
    /// IPMI 1.5 session-less message (auth type none).
    V15 {
        /// Session sequence.
        sequence: u32,
        /// Session id (0 outside a session).
        session_id: u32,
        /// The IPMI message.
        message: &'a [u8],
    },
    /// RMCP+ packet.
    V20 {
        /// Payload type (low 6 bits).
        payload_type: u8,
        /// Payload encrypted.
        encrypted: bool,
        /// Packet carries an integrity trailer.
        authenticated: bool,
        /// Session id (the receiver's).
        session_id: u32,
        /// Session sequence number.
        sequence: u32,
        /// The payload as sent (still encrypted if `encrypted`).
        payload: &'a [u8],
        /// Bytes covered by the integrity code (auth type through next header).
        signed: &'a [u8],
        /// The integrity code (empty if not authenticated).
        auth_code: &'a [u8],
    },
}

fn u32_le(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(array)
}

/// Parses one UDP datagram. `auth_code_len` is the integrity code length of the session (12 for
/// HMAC-SHA1-96).
pub fn parse(datagram: &[u8], auth_code_len: usize) -> Result<Datagram<'_>, PacketError> {
    if datagram.len() < 4 || datagram[0] != 0x06 {
        return Err(PacketError::NotRmcp);
    }
    if datagram[3] & 0x1f == RMCP_CLASS_ASF {
        // ASF: IANA(4) type(1) tag(1) reserved(1) length(1)
        if datagram.len() < 12 {
            return Err(PacketError::Truncated("ASF header"));
        }
        return Ok(Datagram::Asf {
            message_type: datagram[8],
            tag: datagram[9],
        });
    }
    if datagram[3] & 0x1f != 0x07 {
        return Err(PacketError::NotRmcp);
    }
    let body = &datagram[4..];
    let auth_type = *body.first().ok_or(PacketError::Truncated("auth type"))?;
    match auth_type {
        0x00 => {
            if body.len() < 10 {
                return Err(PacketError::Truncated("IPMI 1.5 session header"));
            }
            let sequence = u32_le(&body[1..5]);
            let session_id = u32_le(&body[5..9]);
            let length = body[9] as usize;
            let message = body
                .get(10..10 + length)
                .ok_or(PacketError::Truncated("IPMI 1.5 message"))?;
            Ok(Datagram::V15 {
                sequence,
                session_id,
                message,
            })
        }
        AUTH_TYPE_RMCP_PLUS => {
            if body.len() < 12 {
                return Err(PacketError::Truncated("RMCP+ session header"));
            }
            let payload_byte = body[1];
            let encrypted = payload_byte & 0x80 != 0;
            let authenticated = payload_byte & 0x40 != 0;
            let payload_type = payload_byte & 0x3f;
            if payload_type == 0x02 {
                // OEM explicit payloads carry IANA + id: not spoken here.
                return Err(PacketError::AuthType(payload_byte));
            }
            let session_id = u32_le(&body[2..6]);
            let sequence = u32_le(&body[6..10]);
            let length = u16::from_le_bytes([body[10], body[11]]) as usize;
            let payload = body
                .get(12..12 + length)
                .ok_or(PacketError::Truncated("RMCP+ payload"))?;
            if !authenticated {
                return Ok(Datagram::V20 {
                    payload_type,
                    encrypted,
                    authenticated,
                    session_id,
                    sequence,
                    payload,
                    signed: &body[..12 + length],
                    auth_code: &[],
                });
            }
            // Trailer: pad (0xFF) so that the signed part is a multiple of 4, pad length, next header 0x07.
            let end = body
                .len()
                .checked_sub(auth_code_len)
                .ok_or(PacketError::Truncated("auth code"))?;
            if end < 12 + length + 2 {
                return Err(PacketError::Truncated("integrity trailer"));
            }
            let pad_length = body[end - 2] as usize;
            if body[end - 1] != 0x07 || 12 + length + pad_length + 2 != end {
                return Err(PacketError::Trailer);
            }
            Ok(Datagram::V20 {
                payload_type,
                encrypted,
                authenticated,
                session_id,
                sequence,
                payload,
                signed: &body[..end],
                auth_code: &body[end..],
            })
        }
        other => Err(PacketError::AuthType(other)),
    }
}

/// An IPMI request message (LAN format) addressed to the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Responder slave address.
    pub rs_addr: u8,
    /// Network function (even: request).
    pub netfn: u8,
    /// Responder LUN.
    pub rs_lun: u8,
    /// Requester address.
    pub rq_addr: u8,
    /// Requester sequence.
    pub rq_seq: u8,
    /// Requester LUN.
    pub rq_lun: u8,
    /// Command.
    pub cmd: u8,
    /// Request data.
    pub data: Vec<u8>,
}

/// The IPMI two's-complement checksum.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// Parses an IPMI request message and checks both checksums.
pub fn parse_request(message: &[u8]) -> Result<Request, PacketError> {
    if message.len() < 7 {
        return Err(PacketError::Truncated("IPMI message"));
    }
    if checksum(&message[..2]) != message[2]
        || checksum(&message[3..message.len() - 1]) != message[message.len() - 1]
    {
        return Err(PacketError::Checksum);
    }
    Ok(Request {
        rs_addr: message[0],
        netfn: message[1] >> 2,
        rs_lun: message[1] & 0x03,
        rq_addr: message[3],
        rq_seq: message[4] >> 2,
        rq_lun: message[4] & 0x03,
        cmd: message[5],
        data: message[6..message.len() - 1].to_vec(),
    })
}

/// Builds the response message to `request` with a completion code and data.
pub fn build_response(request: &Request, completion: u8, data: &[u8]) -> Vec<u8> {
    let mut message = vec![request.rq_addr, ((request.netfn | 1) << 2) | request.rq_lun];
    message.push(checksum(&message));
    let body_start = message.len();
    message.extend_from_slice(&[
        request.rs_addr,
        (request.rq_seq << 2) | request.rs_lun,
        request.cmd,
        completion,
    ]);
    message.extend_from_slice(data);
    let sum = checksum(&message[body_start..]);
    message.push(sum);
    message
}

/// Builds an IPMI 1.5 session-less datagram.
pub fn build_v15(message: &[u8]) -> Vec<u8> {
    let mut out = RMCP_IPMI.to_vec();
    out.push(0x00);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(message.len() as u8);
    out.extend_from_slice(message);
    out
}

/// Builds an ASF presence pong answering a ping with `tag`.
pub fn build_pong(tag: u8) -> Vec<u8> {
    let mut out = vec![0x06, 0x00, 0xff, RMCP_CLASS_ASF];
    out.extend_from_slice(&[0x00, 0x00, 0x11, 0xbe]); // ASF IANA 4542
    out.extend_from_slice(&[0x40, tag, 0x00, 0x10]);
    out.extend_from_slice(&[
        0x00, 0x00, 0x11, 0xbe, 0, 0, 0, 0, 0x81, 0x00, 0, 0, 0, 0, 0, 0,
    ]);
    out
}

/// HMAC-SHA1 of the concatenated parts.
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length; should that ever change, an all-zero code simply fails verification.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(key) else {
        return [0u8; 20];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Builds an RMCP+ datagram. With `keys`, the payload is encrypted (AES-CBC-128 with a random IV) and an
/// HMAC-SHA1-96 integrity trailer is appended.
pub fn build_v20(
    payload_type: u8,
    session_id: u32,
    sequence: u32,
    payload: &[u8],
    keys: Option<&SessionKeys>,
) -> Vec<u8> {
    let mut out = RMCP_IPMI.to_vec();
    out.push(AUTH_TYPE_RMCP_PLUS);
    let body = match keys {
        Some(keys) => keys.encrypt(payload),
        None => payload.to_vec(),
    };
    out.push(payload_type | if keys.is_some() { 0xc0 } else { 0x00 });
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    if let Some(keys) = keys {
        let signed_len = out.len() - 4 + 2;
        let pad = (4 - signed_len % 4) % 4;
        out.extend(std::iter::repeat_n(0xff, pad));
        out.push(pad as u8);
        out.push(0x07);
        let code = hmac_sha1(&keys.k1, &[&out[4..]]);
        out.extend_from_slice(&code[..12]);
    }
    out
}

/// Integrity and confidentiality keys of an RMCP+ session (cipher suite 3).
#[derive(Clone)]
pub struct SessionKeys {
    /// K1: HMAC-SHA1-96 integrity key.
    pub k1: [u8; 20],
    /// First 16 bytes of K2: AES-CBC-128 key.
    pub aes: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    /// Derives K1 and K2 from the session integrity key.
    pub fn from_sik(sik: &[u8; 20]) -> Self {
        let k1 = hmac_sha1(sik, &[&[0x01; 20]]);
        let k2 = hmac_sha1(sik, &[&[0x02; 20]]);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&k2[..16]);
        SessionKeys { k1, aes }
    }

    /// Checks an integrity code.
    pub fn verify(&self, signed: &[u8], code: &[u8]) -> bool {
        let expected = hmac_sha1(&self.k1, &[signed]);
        code.len() == 12 && expected[..12] == *code
    }

    /// IV + AES-CBC-128 ciphertext of `plain` with IPMI's confidentiality pad (1, 2, 3, …, pad length).
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
        let pad = (16 - (plain.len() + 1) % 16) % 16;
        let mut data = plain.to_vec();
        data.extend((1..=pad).map(|i| i as u8));
        data.push(pad as u8);
        let iv: [u8; 16] = rand::random();
        let length = data.len();
        let encryptor = cbc::Encryptor::<aes::Aes128>::new(&self.aes.into(), &iv.into());
        let cipher = encryptor
            .encrypt_padded_mut::<NoPadding>(&mut data, length)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let mut out = iv.to_vec();
        out.extend_from_slice(&cipher);
        out
    }

    /// Decrypts IV + ciphertext and strips the confidentiality pad.
    pub fn decrypt(&self, payload: &[u8]) -> Result<Vec<u8>, PacketError> {
        use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
        if payload.len() < 32 || !payload.len().is_multiple_of(16) {
            return Err(PacketError::Truncated("encrypted payload"));
        }
        let (iv, cipher) = payload.split_at(16);
        let mut iv_array = [0u8; 16];
        iv_array.copy_from_slice(iv);
        let mut data = cipher.to_vec();
        let decryptor = cbc::Decryptor::<aes::Aes128>::new(&self.aes.into(), &iv_array.into());
        let plain = decryptor
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| PacketError::Trailer)?;
        let pad = *plain.last().ok_or(PacketError::Trailer)? as usize;
        if pad + 1 > plain.len() {
            return Err(PacketError::Trailer);
        }
        Ok(plain[..plain.len() - 1 - pad].to_vec())
    }
}

/// The little-endian `u32` at `at`, if `bytes` holds it.
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
}
