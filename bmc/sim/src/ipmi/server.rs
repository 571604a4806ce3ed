//! One simulated BMC's RMCP+ responder: the datagram loop, ASF ping, session-less discovery commands and the
//! session handshake (Open Session, RAKP 1–4); commands inside a session are in [`super::commands`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::codes::{PRIV_ADMIN, PRIV_USER, cc};
use super::packet::{
    Datagram, Request, SessionKeys, build_pong, build_response, build_v15, build_v20, hmac_sha1,
    parse, parse_request, payload, u32_at,
};
use crate::SimError;
use crate::state::SimBmc;

/// RMCP+ status codes used here.
mod status {
    pub const OK: u8 = 0x00;
    pub const INVALID_SESSION_ID: u8 = 0x02;
    pub const UNAUTHORIZED_NAME: u8 = 0x0d;
    pub const INVALID_INTEGRITY_CHECK: u8 = 0x0f;
    pub const NO_CIPHER_SUITE_MATCH: u8 = 0x11;
}

/// Sessions kept at once; the oldest is dropped beyond this, as BMCs do.
const MAX_SESSIONS: usize = 32;

/// One RMCP+ session: its handshake values, keys and privilege.
#[derive(Debug)]
pub(super) struct Session {
    console_id: u32,
    pub(super) max_privilege: u8,
    pub(super) privilege: u8,
    rm: [u8; 16],
    rc: [u8; 16],
    role: u8,
    user: Vec<u8>,
    keys: Option<SessionKeys>,
    sequence_out: u32,
    opened: u64,
}

/// A bound, not yet running, IPMI responder.
#[derive(Debug)]
pub struct IpmiServer {
    socket: UdpSocket,
    /// The UDP port it listens on.
    pub port: u16,
}

/// Binds `127.0.0.1:port` (0: any free port).
pub async fn bind(port: u16) -> Result<IpmiServer, SimError> {
    let socket = UdpSocket::bind(("127.0.0.1", port))
        .await
        .map_err(|source| SimError::Bind { port, source })?;
    let port = socket
        .local_addr()
        .map_err(|source| SimError::Bind { port, source })?
        .port();
    Ok(IpmiServer { socket, port })
}

impl IpmiServer {
    /// Answers datagrams until `cancel` fires.
    pub async fn run(self, bmc: Arc<SimBmc>, cancel: CancellationToken) {
        let mut responder = Responder {
            bmc,
            sessions: HashMap::new(),
            opened: 0,
            sel_reservation: 0,
        };
        let mut buf = vec![0u8; 2048];
        loop {
            let received = tokio::select! {
                _ = cancel.cancelled() => return,
                received = self.socket.recv_from(&mut buf) => received,
            };
            let Ok((length, peer)) = received else {
                continue;
            };
            let drop_rate = responder.bmc.faults().udp_drop_rate;
            if drop_rate > 0.0 && rand::random::<f64>() < drop_rate {
                continue;
            }
            if let Some(reply) = responder.handle(&buf[..length], peer)
                && let Err(err) = self.socket.send_to(&reply, peer).await
            {
                debug!(bmc = responder.bmc.index, error = %err, "IPMI reply not sent");
            }
        }
    }
}

/// One BMC's protocol state: its sessions and SEL reservation.
pub(super) struct Responder {
    pub(super) bmc: Arc<SimBmc>,
    pub(super) sessions: HashMap<u32, Session>,
    opened: u64,
    pub(super) sel_reservation: u16,
}

impl Responder {
    fn guid(&self) -> [u8; 16] {
        let mut guid = *b"kiln-sim-bmc-\0\0\0";
        let index = (self.bmc.index as u32).to_le_bytes();
        guid[13..16].copy_from_slice(&index[..3]);
        guid
    }

    fn handle(&mut self, datagram: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        let parsed = match parse(datagram, 12) {
            Ok(parsed) => parsed,
            Err(err) => {
                debug!(bmc = self.bmc.index, %peer, error = %err, "malformed IPMI datagram ignored");
                return None;
            }
        };
        match parsed {
            Datagram::Asf {
                message_type: 0x80,
                tag,
            } => Some(build_pong(tag)),
            Datagram::Asf { .. } => None,
            Datagram::V15 { message, .. } => {
                let request = parse_request(message).ok()?;
                // Outside a session only the discovery commands are answered.
                let (code, data) = match (request.netfn, request.cmd) {
                    (0x06, 0x38) => (cc::OK, self.auth_capabilities()),
                    (0x06, 0x54) => self.cipher_suites(&request),
                    (0x06, 0x01) => (cc::OK, self.device_id()),
                    _ => (cc::PRIVILEGE, Vec::new()),
                };
                Some(build_v15(&build_response(&request, code, &data)))
            }
            Datagram::V20 {
                payload_type,
                payload: body,
                session_id: 0,
                ..
            } => match payload_type {
                payload::OPEN_SESSION_REQUEST => self.open_session(body),
                payload::RAKP1 => self.rakp1(body),
                payload::RAKP3 => self.rakp3(body),
                payload::IPMI => {
                    // Session-less IPMI 2.0 message: discovery commands only.
                    let request = parse_request(body).ok()?;
                    let (code, data) = match (request.netfn, request.cmd) {
                        (0x06, 0x38) => (cc::OK, self.auth_capabilities()),
                        (0x06, 0x54) => self.cipher_suites(&request),
                        _ => (cc::PRIVILEGE, Vec::new()),
                    };
                    Some(build_v20(
                        payload::IPMI,
                        0,
                        0,
                        &build_response(&request, code, &data),
                        None,
                    ))
                }
                _ => None,
            },
            Datagram::V20 {
                payload_type,
                encrypted,
                authenticated,
                session_id,
                payload: body,
                signed,
                auth_code,
                ..
            } => {
                if payload_type != payload::IPMI || !encrypted || !authenticated {
                    return None;
                }
                let session = self.sessions.get(&session_id)?;
                let keys = session.keys.clone()?;
                if !keys.verify(signed, auth_code) {
                    debug!(bmc = self.bmc.index, "IPMI integrity check failed");
                    return None;
                }
                let console_id = session.console_id;
                let plain = keys.decrypt(body).ok()?;
                let request = parse_request(&plain).ok()?;
                let (code, data) = self.command(session_id, &request);
                let sequence = match self.sessions.get_mut(&session_id) {
                    Some(session) => {
                        session.sequence_out = session.sequence_out.wrapping_add(1);
                        session.sequence_out
                    }
                    // Closed by this very command: the answer still goes out under the old session.
                    None => 1,
                };
                let response = build_response(&request, code, &data);
                Some(build_v20(
                    payload::IPMI,
                    console_id,
                    sequence,
                    &response,
                    Some(&keys),
                ))
            }
        }
    }
}

impl Responder {
    pub(super) fn auth_capabilities(&self) -> Vec<u8> {
        // Channel 1; IPMI 2.0 extended data available (bit 7) + MD5/password bits; non-null user names;
        // IPMI 2.0 connections supported; no OEM.
        vec![0x01, 0x80 | 0x14, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00]
    }

    pub(super) fn cipher_suites(&self, request: &Request) -> (u8, Vec<u8>) {
        let index = request.data.get(2).copied().unwrap_or(0) & 0x3f;
        // One record: cipher suite 3 = RAKP-HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128.
        let data = if index == 0 {
            vec![0x01, 0xc0, 0x03, 0x01, 0x41, 0x81]
        } else {
            vec![0x01]
        };
        (cc::OK, data)
    }

    fn open_session(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < 32 {
            return None;
        }
        let tag = body[0];
        let requested = body[1] & 0x0f;
        let console_id = u32_at(body, 4)?;
        let (auth, integrity, confidentiality) =
            (body[12] & 0x3f, body[20] & 0x3f, body[28] & 0x3f);
        if (auth, integrity, confidentiality) != (0x01, 0x01, 0x01) {
            // Only cipher suite 3; in particular cipher suite 0 (no authentication) is refused.
            let reply = [tag, status::NO_CIPHER_SUITE_MATCH, 0, 0];
            let mut reply = reply.to_vec();
            reply.extend_from_slice(&console_id.to_le_bytes());
            return Some(build_v20(
                payload::OPEN_SESSION_RESPONSE,
                0,
                0,
                &reply,
                None,
            ));
        }
        let mut bmc_id: u32 = rand::random::<u32>() | 1;
        while self.sessions.contains_key(&bmc_id) {
            bmc_id = rand::random::<u32>() | 1;
        }
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.opened)
                .map(|(id, _)| *id)
        {
            self.sessions.remove(&oldest);
        }
        self.opened += 1;
        let granted = if requested == 0 {
            PRIV_ADMIN
        } else {
            requested.min(PRIV_ADMIN)
        };
        self.sessions.insert(
            bmc_id,
            Session {
                console_id,
                max_privilege: granted,
                privilege: PRIV_USER,
                rm: [0; 16],
                rc: [0; 16],
                role: 0,
                user: Vec::new(),
                keys: None,
                sequence_out: 0,
                opened: self.opened,
            },
        );
        let mut reply = vec![tag, status::OK, granted, 0];
        reply.extend_from_slice(&console_id.to_le_bytes());
        reply.extend_from_slice(&bmc_id.to_le_bytes());
        reply.extend_from_slice(&[0x00, 0, 0, 0x08, 0x01, 0, 0, 0]);
        reply.extend_from_slice(&[0x01, 0, 0, 0x08, 0x01, 0, 0, 0]);
        reply.extend_from_slice(&[0x02, 0, 0, 0x08, 0x01, 0, 0, 0]);
        Some(build_v20(
            payload::OPEN_SESSION_RESPONSE,
            0,
            0,
            &reply,
            None,
        ))
    }

    fn rakp1(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < 28 {
            return None;
        }
        let tag = body[0];
        let bmc_id = u32_at(body, 4)?;
        let guid = self.guid();
        let bmc = self.bmc.clone();
        let Some(session) = self.sessions.get_mut(&bmc_id) else {
            return Some(build_v20(
                payload::RAKP2,
                0,
                0,
                &[tag, status::INVALID_SESSION_ID, 0, 0, 0, 0, 0, 0],
                None,
            ));
        };
        let user_length = body[27] as usize;
        let user = body.get(28..28 + user_length)?.to_vec();
        let mut reply = vec![tag, status::OK, 0, 0];
        reply.extend_from_slice(&session.console_id.to_le_bytes());
        if user != bmc.user.as_bytes() || bmc.faults().wrong_credentials {
            reply[1] = status::UNAUTHORIZED_NAME;
            return Some(build_v20(payload::RAKP2, 0, 0, &reply, None));
        }
        session.rm.copy_from_slice(&body[8..24]);
        session.rc = rand::random();
        session.role = body[24];
        session.user = user;
        let code = hmac_sha1(
            bmc.password.as_bytes(),
            &[
                &session.console_id.to_le_bytes(),
                &bmc_id.to_le_bytes(),
                &session.rm,
                &session.rc,
                &guid,
                &[session.role, session.user.len() as u8],
                &session.user,
            ],
        );
        reply.extend_from_slice(&session.rc);
        reply.extend_from_slice(&guid);
        reply.extend_from_slice(&code);
        Some(build_v20(payload::RAKP2, 0, 0, &reply, None))
    }

    fn rakp3(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < 8 {
            return None;
        }
        let tag = body[0];
        let bmc_id = u32_at(body, 4)?;
        let guid = self.guid();
        let password = self.bmc.password.clone();
        let session = self.sessions.get_mut(&bmc_id)?;
        let mut reply = vec![tag, status::OK, 0, 0];
        reply.extend_from_slice(&session.console_id.to_le_bytes());
        let expected = hmac_sha1(
            password.as_bytes(),
            &[
                &session.rc,
                &session.console_id.to_le_bytes(),
                &[session.role, session.user.len() as u8],
                &session.user,
            ],
        );
        if body[1] != status::OK || body.get(8..28) != Some(&expected[..]) {
            reply[1] = status::INVALID_INTEGRITY_CHECK;
            self.sessions.remove(&bmc_id);
            return Some(build_v20(payload::RAKP4, 0, 0, &reply, None));
        }
        let sik = hmac_sha1(
            password.as_bytes(),
            &[
                &session.rm,
                &session.rc,
                &[session.role, session.user.len() as u8],
                &session.user,
            ],
        );
        let icv = hmac_sha1(&sik, &[&session.rm, &bmc_id.to_le_bytes(), &guid]);
        session.keys = Some(SessionKeys::from_sik(&sik));
        session.max_privilege = session.max_privilege.min(match session.role & 0x0f {
            0 => PRIV_ADMIN,
            role => role,
        });
        reply.extend_from_slice(&icv[..12]);
        Some(build_v20(payload::RAKP4, 0, 0, &reply, None))
    }
}
