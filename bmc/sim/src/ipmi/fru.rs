//! The simulated BMC's FRU inventory device 0 (IPMI Platform Management FRU Information Storage Definition
//! v1.0): a common header and chassis, board and product info areas carrying the same manufacturer, model
//! and serial number as the Redfish half's ComputerSystem, served by Get FRU Inventory Area Info and Read FRU
//! Data (netfn Storage 0x0a, commands 0x10/0x11) so that `ipmitool fru print 0` and kiln read the same
//! identity over IPMI as over Redfish.

use super::codes::cc;
use super::server::Responder;
use crate::state::SimBmc;

/// Most bytes one Read FRU Data answers; larger requests get completion code 0xCA ("cannot return the number
/// of requested data bytes"), as real BMCs cap reads, so clients' back-off is exercised.
pub const MAX_READ_BYTES: usize = 32;

/// Rack Mount Chassis (SMBIOS chassis type 0x17).
const CHASSIS_TYPE_RACK_MOUNT: u8 = 0x17;

/// Board manufacturing date: minutes since 1996-01-01 00:00 UTC (here 2024-01-01).
const BOARD_MFG_MINUTES: u32 = 14_726_880;

/// An 8-bit ASCII type/length field (type code 11b), at most 63 bytes. One-byte strings are padded with a
/// space because the type/length byte 0xC1 is the end-of-fields marker.
fn text_field(out: &mut Vec<u8>, text: &str) {
    let mut bytes: Vec<u8> = text.bytes().take(63).collect();
    if bytes.len() == 1 {
        bytes.push(b' ');
    }
    out.push(0xc0 | bytes.len() as u8);
    out.extend_from_slice(&bytes);
}

/// Ends an info area: end marker, zero padding to a multiple of 8 bytes, length byte and zero checksum.
fn seal_area(mut area: Vec<u8>) -> Vec<u8> {
    area.push(0xc1);
    while !(area.len() + 1).is_multiple_of(8) {
        area.push(0x00);
    }
    area[1] = ((area.len() + 1) / 8) as u8;
    area.push(zero_checksum(&area));
    area
}

/// The byte that makes `bytes` sum to zero (mod 256).
fn zero_checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The FRU image of one simulated server.
pub fn fru_image(bmc: &SimBmc) -> Vec<u8> {
    let profile = bmc.profile;
    let part_number = format!("KSIM-{}", profile.name.to_ascii_uppercase());

    let mut chassis = vec![0x01, 0x00, CHASSIS_TYPE_RACK_MOUNT];
    text_field(&mut chassis, &part_number);
    text_field(&mut chassis, &bmc.serial);
    let chassis = seal_area(chassis);

    let mut board = vec![0x01, 0x00, 0x00];
    board.extend_from_slice(&BOARD_MFG_MINUTES.to_le_bytes()[..3]);
    text_field(&mut board, profile.manufacturer);
    text_field(&mut board, &format!("{} mainboard", profile.model));
    text_field(&mut board, &format!("MB{}", bmc.serial));
    text_field(&mut board, &format!("{part_number}-MB"));
    text_field(&mut board, ""); // FRU file id
    let board = seal_area(board);

    let mut product = vec![0x01, 0x00, 0x00];
    text_field(&mut product, profile.manufacturer);
    text_field(&mut product, profile.model);
    text_field(&mut product, &part_number);
    text_field(&mut product, "1.0");
    text_field(&mut product, &bmc.serial);
    text_field(&mut product, ""); // asset tag
    text_field(&mut product, ""); // FRU file id
    let product = seal_area(product);

    // Offsets in multiples of 8 bytes: the header is one unit, then chassis, board and product in order.
    let chassis_at = 1u8;
    let board_at = chassis_at + (chassis.len() / 8) as u8;
    let product_at = board_at + (board.len() / 8) as u8;
    let mut header = vec![0x01, 0x00, chassis_at, board_at, product_at, 0x00, 0x00];
    header.push(zero_checksum(&header));
    [header, chassis, board, product].concat()
}

impl Responder {
    /// Get FRU Inventory Area Info: device 0 only, byte access.
    pub(super) fn fru_area_info(&self, data: &[u8]) -> (u8, Vec<u8>) {
        match data.first() {
            None => (cc::REQUEST_DATA_LENGTH, Vec::new()),
            Some(0) => {
                let size = fru_image(&self.bmc).len() as u16;
                let [low, high] = size.to_le_bytes();
                (cc::OK, vec![low, high, 0x00])
            }
            Some(_) => (cc::NOT_PRESENT, Vec::new()),
        }
    }

    /// Read FRU Data: `count` bytes from `offset` of device 0, clipped at the end of the image.
    pub(super) fn read_fru_data(&self, data: &[u8]) -> (u8, Vec<u8>) {
        let Some(&[device, low, high, count]) = data.get(..4) else {
            return (cc::REQUEST_DATA_LENGTH, Vec::new());
        };
        if device != 0 {
            return (cc::NOT_PRESENT, Vec::new());
        }
        let count = usize::from(count);
        if count > MAX_READ_BYTES {
            return (cc::CANNOT_RETURN_BYTES, Vec::new());
        }
        let image = fru_image(&self.bmc);
        let offset = usize::from(u16::from_le_bytes([low, high]));
        if offset >= image.len() {
            return (cc::PARAMETER_OUT_OF_RANGE, Vec::new());
        }
        let end = (offset + count).min(image.len());
        let mut answer = vec![(end - offset) as u8];
        answer.extend_from_slice(&image[offset..end]);
        (cc::OK, answer)
    }
}
