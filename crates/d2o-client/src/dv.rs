//! Deletion vectors: Delta's `RoaringBitmapArray` in a DV file, or inline (Z85).
//!
//! A DV file is a version byte (1), then at `offset`: the size (4 bytes, big endian), the magic
//! (4 bytes, little endian), the portable 64-bit roaring bitmap, and a CRC-32 (big endian) of
//! magic and bitmap. Rows whose index is in the bitmap are deleted.

use roaring::RoaringTreemap;

use crate::error::{ClientError, Result};

const PORTABLE_MAGIC: u32 = 1_681_511_377;

fn bad(msg: impl Into<String>) -> ClientError {
    ClientError::protocol(format!("invalid deletion vector: {}", msg.into()))
}

/// Parses the deletion vector at `offset` of a DV file.
pub(crate) fn parse_file(bytes: &[u8], offset: Option<i64>, size_in_bytes: i64) -> Result<RoaringTreemap> {
    if bytes.first() != Some(&1) {
        return Err(bad(format!("unknown DV file version {:?}", bytes.first())));
    }
    let start = usize::try_from(offset.unwrap_or(1)).map_err(|_| bad("negative offset"))?;
    let size = usize::try_from(size_in_bytes).map_err(|_| bad("negative size"))?;
    let u32_at = |at: usize| -> Result<[u8; 4]> {
        bytes.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(|| bad("the DV file is too short"))
    };
    let stored_size = u32::from_be_bytes(u32_at(start)?) as usize;
    if stored_size != size {
        return Err(bad(format!("size {stored_size} in the file, {size} in the log")));
    }
    let magic = u32::from_le_bytes(u32_at(start + 4)?);
    if magic != PORTABLE_MAGIC {
        return Err(bad(format!("magic {magic}")));
    }
    let crc_at = start + 4 + size;
    let crc = u32::from_be_bytes(u32_at(crc_at)?);
    let expected = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes[start + 4..crc_at]);
    if crc != expected {
        return Err(bad("CRC mismatch"));
    }
    RoaringTreemap::deserialize_from(&bytes[start + 8..crc_at]).map_err(|e| bad(e.to_string()))
}

/// Parses an inline (`storageType` `i`) deletion vector.
pub(crate) fn parse_inline(encoded: &str) -> Result<RoaringTreemap> {
    let bytes = z85::decode(encoded).map_err(|e| bad(format!("Z85: {e}")))?;
    let magic = bytes.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_le_bytes);
    if magic != Some(PORTABLE_MAGIC) {
        return Err(bad(format!("magic {magic:?}")));
    }
    RoaringTreemap::deserialize_from(&bytes[4..]).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_file_layout() {
        let mut bitmap = RoaringTreemap::new();
        bitmap.insert(3);
        bitmap.insert(7);
        let mut payload = PORTABLE_MAGIC.to_le_bytes().to_vec();
        bitmap.serialize_into(&mut payload).expect("serializes");
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&payload);
        let mut file = vec![1u8];
        file.extend((payload.len() as u32).to_be_bytes());
        file.extend(&payload);
        file.extend(crc.to_be_bytes());
        let parsed = parse_file(&file, Some(1), payload.len() as i64).expect("valid");
        assert_eq!(parsed.iter().collect::<Vec<_>>(), vec![3, 7]);
        file[10] ^= 0xff;
        assert!(parse_file(&file, Some(1), payload.len() as i64).is_err());
    }
}
