//! FRU inventory over IPMI: reading FRU device 0 (Get FRU Inventory Area Info, Read FRU Data; netfn Storage
//! 0x0a, commands 0x10/0x11, which `ipmi-rs` 0.6 lacks) and decoding its chassis, board and product info areas
//! (IPMI Platform Management FRU Information Storage Definition v1.0): the serial numbers, manufacturer and
//! model that the Redfish half reads from the ComputerSystem resource.
//!
//! Only the common header and the three info areas are read, not the whole device (real FRUs carry kilobytes
//! of multi-records kiln does not need). Decoding never trusts an offset or length: everything is bounded by
//! the bytes actually read, and a malformed area is skipped rather than failing the whole inventory.

use ipmi_rs::connection::{CompletionErrorCode, IpmiCommand, Message};
use ipmi_rs::rmcp::Rmcp;
use ipmi_rs::{Ipmi, IpmiError};
use tracing::debug;

use super::commands::BadResponse;
use super::{ipmi_error, send};
use crate::BmcError;

/// Get FRU Inventory Area Info (netfn 0x0a, cmd 0x10) for one FRU device.
#[derive(Debug, Clone, Copy)]
pub struct GetFruInventoryAreaInfo(pub u8);

/// The size of a FRU device and how it is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FruAreaInfo {
    /// Size in bytes.
    pub size_bytes: u16,
    /// Offsets and counts are in 16-bit words rather than bytes.
    pub word_access: bool,
}

impl From<GetFruInventoryAreaInfo> for Message {
    fn from(GetFruInventoryAreaInfo(device): GetFruInventoryAreaInfo) -> Self {
        Message::new_raw(0x0a, 0x10, vec![device])
    }
}

impl IpmiCommand for GetFruInventoryAreaInfo {
    type Output = FruAreaInfo;
    type Error = BadResponse;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        let [low, high, access, ..] = *data else {
            return Err(BadResponse("FRU area info shorter than 3 bytes"));
        };
        Ok(FruAreaInfo {
            size_bytes: u16::from_le_bytes([low, high]),
            word_access: access & 0x01 != 0,
        })
    }
}

/// Read FRU Data (netfn 0x0a, cmd 0x11): `count` units from `offset` of FRU device `device`.
#[derive(Debug, Clone, Copy)]
pub struct ReadFruData {
    /// FRU device id (0: the BMC's own).
    pub device: u8,
    /// Offset, in the device's access unit.
    pub offset: u16,
    /// Units to read.
    pub count: u8,
}

impl From<ReadFruData> for Message {
    fn from(read: ReadFruData) -> Self {
        let [low, high] = read.offset.to_le_bytes();
        Message::new_raw(0x0a, 0x11, vec![read.device, low, high, read.count])
    }
}

impl IpmiCommand for ReadFruData {
    /// (units returned, data).
    type Output = (u8, Vec<u8>);
    type Error = BadResponse;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        let (&count, rest) = data
            .split_first()
            .ok_or(BadResponse("FRU data answer without a count"))?;
        Ok((count, rest.to_vec()))
    }
}

/// What kiln reads from a FRU: the fields of the chassis, board and product info areas that identify a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FruInventory {
    /// Chassis part number.
    pub chassis_part_number: Option<String>,
    /// Chassis serial number.
    pub chassis_serial: Option<String>,
    /// Board manufacturer.
    pub board_manufacturer: Option<String>,
    /// Board product name.
    pub board_product: Option<String>,
    /// Board serial number.
    pub board_serial: Option<String>,
    /// Board part number.
    pub board_part_number: Option<String>,
    /// Product manufacturer.
    pub product_manufacturer: Option<String>,
    /// Product name (what Redfish calls the model).
    pub product_name: Option<String>,
    /// Product part / model number.
    pub product_part_number: Option<String>,
    /// Product version.
    pub product_version: Option<String>,
    /// Product serial number (what Redfish calls the system's serial number).
    pub product_serial: Option<String>,
    /// Asset tag.
    pub asset_tag: Option<String>,
}

impl FruInventory {
    /// The server's serial: the product serial, else the chassis serial, else the board serial.
    pub fn serial(&self) -> Option<String> {
        self.product_serial
            .clone()
            .or_else(|| self.chassis_serial.clone())
            .or_else(|| self.board_serial.clone())
    }

    /// The server's manufacturer: the product's, else the board's.
    pub fn manufacturer(&self) -> Option<String> {
        self.product_manufacturer
            .clone()
            .or_else(|| self.board_manufacturer.clone())
    }

    /// The server's model: the product name, else the product part number, else the board product.
    pub fn model(&self) -> Option<String> {
        self.product_name
            .clone()
            .or_else(|| self.product_part_number.clone())
            .or_else(|| self.board_product.clone())
    }
}

/// Why a FRU image could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FruError {
    /// Fewer than the 8 bytes of the common header.
    #[error("FRU data shorter than its 8-byte common header")]
    Short,
    /// The common header's format version is not 1.
    #[error("FRU common header format version {0:#04x} is not 1")]
    Version(u8),
    /// The common header's bytes do not sum to zero.
    #[error("FRU common header checksum is wrong")]
    HeaderChecksum,
}

/// The info areas of the common header: (header byte index, name).
const AREAS: [(usize, &str); 3] = [(2, "chassis"), (3, "board"), (4, "product")];

/// Bytes of an info area before its first type/length field.
fn fields_start(area: &str) -> usize {
    match area {
        // Version, length, language, 3 bytes of manufacturing date.
        "board" => 6,
        // Version, length, chassis type / language.
        _ => 3,
    }
}

/// Decodes the chassis, board and product info areas of a FRU image (missing bytes may be zero). A header
/// that is missing, of another version or with a bad checksum is an error; an area that is truncated, of
/// another version or with a bad checksum is skipped.
pub fn parse_fru(image: &[u8]) -> Result<FruInventory, FruError> {
    let header = image.get(..8).ok_or(FruError::Short)?;
    if header[0] & 0x0f != 0x01 {
        return Err(FruError::Version(header[0]));
    }
    if zero_checksum(header) != 0 {
        return Err(FruError::HeaderChecksum);
    }
    let mut fru = FruInventory::default();
    for (index, name) in AREAS {
        let Some(area) = area_at(image, header[index]) else {
            continue;
        };
        let Some(fields) = area.get(fields_start(name)..) else {
            continue;
        };
        let mut values = decode_fields(fields).into_iter();
        let mut next = || values.next().flatten();
        match name {
            "chassis" => {
                fru.chassis_part_number = next();
                fru.chassis_serial = next();
            }
            "board" => {
                fru.board_manufacturer = next();
                fru.board_product = next();
                fru.board_serial = next();
                fru.board_part_number = next();
            }
            _ => {
                fru.product_manufacturer = next();
                fru.product_name = next();
                fru.product_part_number = next();
                fru.product_version = next();
                fru.product_serial = next();
                fru.asset_tag = next();
            }
        }
    }
    Ok(fru)
}

/// The two's-complement sum of `bytes`: zero for a valid header or area.
fn zero_checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// The info area starting at `offset_8` (in multiples of 8 bytes), if present, whole, version 1 and with a
/// correct checksum.
fn area_at(image: &[u8], offset_8: u8) -> Option<&[u8]> {
    if offset_8 == 0 {
        return None;
    }
    let start = usize::from(offset_8) * 8;
    let length = usize::from(*image.get(start + 1)?) * 8;
    let area = image.get(start..start + length)?;
    (length >= 8 && area[0] & 0x0f == 0x01 && zero_checksum(area) == 0).then_some(area)
}

/// The values of the type/length-prefixed fields up to the end marker (0xC1); an empty field is `None`.
fn decode_fields(mut bytes: &[u8]) -> Vec<Option<String>> {
    let mut values = Vec::new();
    while let Some((&type_length, rest)) = bytes.split_first() {
        if type_length == 0xc1 {
            break;
        }
        let length = usize::from(type_length & 0x3f);
        let Some(data) = rest.get(..length) else {
            break;
        };
        values.push(decode_field(type_length >> 6, data));
        bytes = &rest[length..];
    }
    values
}

/// One field's text by its type code: 0 binary (as hex), 1 BCD plus, 2 6-bit packed ASCII, 3 8-bit
/// ASCII/Latin-1. Trailing spaces and NULs, which vendors pad with, are dropped.
fn decode_field(kind: u8, data: &[u8]) -> Option<String> {
    let text: String = match kind {
        0 => data.iter().map(|b| format!("{b:02x}")).collect(),
        1 => data
            .iter()
            .flat_map(|b| [b >> 4, b & 0x0f])
            .map(|digit| match digit {
                0..=9 => char::from(b'0' + digit),
                0x0a => ' ',
                0x0b => '-',
                0x0c => '.',
                _ => '?',
            })
            .collect(),
        2 => {
            // Little-endian bit stream of 6-bit codes, 0x20 (space) based: four characters per three bytes.
            let mut text = String::new();
            for group in data.chunks(3) {
                let bits = group
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (8 * i));
                for i in 0..(group.len() * 8 / 6) {
                    text.push(char::from(0x20 + ((bits >> (6 * i)) & 0x3f) as u8));
                }
            }
            text
        }
        _ => data.iter().map(|b| char::from(*b)).collect(),
    };
    let trimmed = text.trim_end_matches([' ', '\0']);
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Largest chunk kiln asks for in one Read FRU Data; halved down to [`MIN_CHUNK`] when a BMC says it is too
/// much (completion codes 0xC7, 0xC8, 0xCA), as many cap answers below the IPMI message limit.
const MAX_CHUNK: usize = 32;
const MIN_CHUNK: usize = 8;

/// Reads the common header and the three info areas of FRU device 0 and decodes them.
pub(super) fn read_fru(ipmi: &mut Ipmi<Rmcp>, addr: &str) -> Result<FruInventory, BmcError> {
    let info = send(ipmi, addr, GetFruInventoryAreaInfo(0), "get FRU area info")?;
    let size = usize::from(info.size_bytes);
    let mut reader = FruReader {
        ipmi,
        addr,
        word_access: info.word_access,
        chunk: MAX_CHUNK,
    };
    if size < 8 {
        return Err(BmcError::Protocol {
            addr: addr.to_string(),
            detail: format!("FRU device 0 holds {size} bytes, less than its header"),
        });
    }
    let mut image = vec![0u8; size];
    reader.read(0, &mut image[..8])?;
    for (index, _) in AREAS {
        let start = usize::from(image[index]) * 8;
        if start == 0 || start + 2 > size {
            continue;
        }
        reader.read(start, &mut image[start..start + 2])?;
        let end = (start + usize::from(image[start + 1]) * 8).min(size);
        if end > start + 2 {
            reader.read(start + 2, &mut image[start + 2..end])?;
        }
    }
    parse_fru(&image).map_err(|err| BmcError::Protocol {
        addr: addr.to_string(),
        detail: format!("FRU device 0: {err}"),
    })
}

/// Reads byte ranges of FRU device 0 in chunks the BMC accepts.
struct FruReader<'a> {
    ipmi: &'a mut Ipmi<Rmcp>,
    addr: &'a str,
    word_access: bool,
    chunk: usize,
}

impl FruReader<'_> {
    /// Fills `out` with the device's bytes from `offset`.
    fn read(&mut self, offset: usize, out: &mut [u8]) -> Result<(), BmcError> {
        let unit = if self.word_access { 2 } else { 1 };
        let mut done = 0;
        while done < out.len() {
            let want = (out.len() - done).min(self.chunk).div_ceil(unit);
            let at = (offset + done) / unit;
            let request = ReadFruData {
                device: 0,
                offset: u16::try_from(at).map_err(|_| self.protocol("FRU offset past 64 KiB"))?,
                count: want as u8,
            };
            let (count, data) = match self.ipmi.send_recv(request) {
                Ok(answer) => answer,
                Err(IpmiError::Failed {
                    completion_code:
                        CompletionErrorCode::RequestDataLenInvalid
                        | CompletionErrorCode::RequestDataLengthLimitExceeded
                        | CompletionErrorCode::CannotReturnNumOfRequestedBytes,
                    ..
                }) if self.chunk > MIN_CHUNK => {
                    self.chunk /= 2;
                    debug!(bmc = %self.addr, chunk = self.chunk, "FRU read too large, asking for less");
                    continue;
                }
                Err(err) => return Err(ipmi_error(self.addr, "read FRU data", err)),
            };
            let bytes = usize::from(count) * unit;
            if count == 0 || usize::from(count) > want || data.len() < bytes {
                return Err(self.protocol(format!(
                    "read FRU data: asked for {want} units at {at}, got {count} with {} bytes",
                    data.len()
                )));
            }
            let take = bytes.min(out.len() - done);
            out[done..done + take].copy_from_slice(&data[..take]);
            done += take;
        }
        Ok(())
    }

    fn protocol(&self, detail: impl Into<String>) -> BmcError {
        BmcError::Protocol {
            addr: self.addr.to_string(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends the zero checksum that makes `bytes` sum to 0.
    fn sealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let sum = zero_checksum(&bytes);
        bytes.push(0u8.wrapping_sub(sum));
        bytes
    }

    fn area(prefix: &[u8], fields: &[&[u8]]) -> Vec<u8> {
        let mut area = prefix.to_vec();
        for field in fields {
            area.extend_from_slice(field);
        }
        area.push(0xc1);
        while !(area.len() + 1).is_multiple_of(8) {
            area.push(0);
        }
        area[1] = ((area.len() + 1) / 8) as u8;
        sealed(area)
    }

    fn text(s: &str) -> Vec<u8> {
        let mut field = vec![0xc0 | s.len() as u8];
        field.extend_from_slice(s.as_bytes());
        field
    }

    /// A FRU built by hand from the layout in the FRU storage definition: header, chassis at 8, board after.
    fn image() -> Vec<u8> {
        let chassis = area(&[0x01, 0, 0x17], &[&text("CH-1"), &text("CSERIAL")]);
        let board = area(
            &[0x01, 0, 0x00, 0x10, 0x20, 0x30],
            &[
                &text("ACME"),
                &text("Board"),
                &[0x43, 0x12, 0x34, 0xa5],
                &[0x00],
            ],
        );
        let product_offset = 1 + (chassis.len() + board.len()) / 8;
        let product = area(
            &[0x01, 0, 0x00],
            &[
                &text("ACME Corp"),
                &text("Server 9000"),
                &[0x83, 0x29, 0xdc, 0xa6], // 6-bit packed "IPMI"
                &text("1.0"),
                &text("PSERIAL  "),
                &[0xc0],
            ],
        );
        let header = sealed(vec![
            0x01,
            0,
            1,
            1 + chassis.len() as u8 / 8,
            product_offset as u8,
            0,
            0,
        ]);
        [header, chassis, board, product].concat()
    }

    #[test]
    fn decodes_chassis_board_and_product_areas() {
        let fru = parse_fru(&image()).expect("parse");
        assert_eq!(fru.chassis_part_number.as_deref(), Some("CH-1"));
        assert_eq!(fru.chassis_serial.as_deref(), Some("CSERIAL"));
        assert_eq!(fru.board_manufacturer.as_deref(), Some("ACME"));
        assert_eq!(fru.board_serial.as_deref(), Some("1234 5"));
        assert_eq!(fru.product_part_number.as_deref(), Some("IPMI"));
        assert_eq!(fru.product_serial.as_deref(), Some("PSERIAL"));
        assert_eq!(fru.asset_tag, None);
        assert_eq!(fru.serial().as_deref(), Some("PSERIAL"));
        assert_eq!(fru.model().as_deref(), Some("Server 9000"));
    }

    #[test]
    fn bad_header_is_an_error_and_a_bad_area_is_skipped() {
        let mut image = image();
        assert_eq!(parse_fru(&image[..5]), Err(FruError::Short));
        image[9] ^= 0xff; // chassis area length: the area no longer adds up
        let fru = parse_fru(&image).expect("a bad area is skipped");
        assert_eq!(fru.chassis_serial, None);
        assert_eq!(fru.product_serial.as_deref(), Some("PSERIAL"));
        image[7] ^= 1;
        assert_eq!(parse_fru(&image), Err(FruError::HeaderChecksum));
        image[0] = 2;
        assert!(matches!(parse_fru(&image), Err(FruError::Version(2))));
    }

    #[test]
    fn field_lengths_past_the_area_end_stop_decoding() {
        assert_eq!(
            decode_fields(&[0xc5, b'a', b'b']),
            Vec::<Option<String>>::new()
        );
        assert_eq!(
            decode_fields(&[0xc2, b'o', b'k', 0xff]),
            vec![Some("ok".to_string())]
        );
    }
}
