//! IPMI completion codes and privilege levels, shared by the handshake and the commands.

/// Completion codes used here.
pub(super) mod cc {
    pub const OK: u8 = 0x00;
    pub const INVALID_COMMAND: u8 = 0xc1;
    pub const REQUEST_DATA_LENGTH: u8 = 0xc7;
    pub const INVALID_DATA_FIELD: u8 = 0xcc;
    pub const PARAMETER_NOT_SUPPORTED: u8 = 0x80;
    pub const PRIVILEGE: u8 = 0xd4;
    pub const PRIVILEGE_LIMIT: u8 = 0x81;
    pub const PARAMETER_OUT_OF_RANGE: u8 = 0xc9;
    pub const CANNOT_RETURN_BYTES: u8 = 0xca;
    pub const NOT_PRESENT: u8 = 0xcb;
}

/// Privilege levels.
pub(super) const PRIV_USER: u8 = 0x02;
pub(super) const PRIV_OPERATOR: u8 = 0x03;
pub(super) const PRIV_ADMIN: u8 = 0x04;
