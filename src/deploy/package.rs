//! Reproducible zip archives for Lambda: entries in a fixed order, a fixed timestamp
//! (1980-01-01 00:00, the DOS epoch), fixed Unix permissions, deflate at a fixed level.
//! The same input bytes always give the same zip bytes, so a zip's SHA-256 identifies its
//! contents.

use flate2::{write::DeflateEncoder, Compression};
use std::io::Write;

/// DOS date of 1980-01-01 (year 0, month 1, day 1).
const DOS_DATE: u16 = (1 << 5) | 1;
/// DOS time 00:00:00.
const DOS_TIME: u16 = 0;
/// Unix regular file, rwxr-xr-x (Lambda needs `bootstrap` executable).
const UNIX_MODE: u32 = 0o100_755;

/// One file to put in the archive.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Path inside the archive.
    pub name: &'a str,
    /// File contents.
    pub data: &'a [u8],
}

/// A file too large for a plain (non-ZIP64) archive.
#[derive(Debug, thiserror::Error)]
#[error("{0} is larger than 4 GiB, which Lambda would refuse anyway")]
pub struct TooLarge(String);

/// Builds the archive in memory; entries are sorted by name first.
pub fn zip(entries: &[Entry<'_>]) -> Result<Vec<u8>, TooLarge> {
    let mut sorted: Vec<&Entry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in &sorted {
        let too_large = || TooLarge(entry.name.to_owned());
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::new(9));
        encoder.write_all(entry.data).map_err(|_| too_large())?;
        let compressed = encoder.finish().map_err(|_| too_large())?;
        let crc = crc32fast::hash(entry.data);
        let size = u32::try_from(entry.data.len()).map_err(|_| too_large())?;
        let csize = u32::try_from(compressed.len()).map_err(|_| too_large())?;
        let offset = u32::try_from(out.len()).map_err(|_| too_large())?;
        let name = entry.name.as_bytes();
        let name_len = u16::try_from(name.len()).map_err(|_| too_large())?;

        // Local file header.
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, 20); // version needed: 2.0 (deflate)
        put16(&mut out, 0); // flags
        put16(&mut out, 8); // deflate
        put16(&mut out, DOS_TIME);
        put16(&mut out, DOS_DATE);
        put32(&mut out, crc);
        put32(&mut out, csize);
        put32(&mut out, size);
        put16(&mut out, name_len);
        put16(&mut out, 0); // extra length
        out.extend_from_slice(name);
        out.extend_from_slice(&compressed);

        // Central directory record.
        put32(&mut central, 0x0201_4b50);
        put16(&mut central, (3 << 8) | 20); // made by: Unix, 2.0
        put16(&mut central, 20);
        put16(&mut central, 0);
        put16(&mut central, 8);
        put16(&mut central, DOS_TIME);
        put16(&mut central, DOS_DATE);
        put32(&mut central, crc);
        put32(&mut central, csize);
        put32(&mut central, size);
        put16(&mut central, name_len);
        put16(&mut central, 0); // extra
        put16(&mut central, 0); // comment
        put16(&mut central, 0); // disk number
        put16(&mut central, 0); // internal attributes
        put32(&mut central, UNIX_MODE << 16); // external attributes: Unix mode
        put32(&mut central, offset);
        central.extend_from_slice(name);
    }
    let too_large = || TooLarge("the archive".to_owned());
    let cd_offset = u32::try_from(out.len()).map_err(|_| too_large())?;
    let cd_size = u32::try_from(central.len()).map_err(|_| too_large())?;
    let count = u16::try_from(sorted.len()).map_err(|_| too_large())?;
    out.extend_from_slice(&central);
    // End of central directory.
    put32(&mut out, 0x0605_4b50);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, count);
    put16(&mut out, count);
    put32(&mut out, cd_size);
    put32(&mut out, cd_offset);
    put16(&mut out, 0);
    Ok(out)
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;
    use std::io::Read;

    #[test]
    fn same_input_same_bytes_and_readable() {
        let data = b"#!/bin/sh\necho hi\n".repeat(100);
        let a = zip(&[Entry { name: "bootstrap", data: &data }]).unwrap();
        let b = zip(&[Entry { name: "bootstrap", data: &data }]).unwrap();
        assert_eq!(a, b);
        // Parse the single local header back and inflate the data.
        assert_eq!(&a[..4], &[0x50, 0x4b, 0x03, 0x04]);
        let csize = u32::from_le_bytes(a[18..22].try_into().unwrap()) as usize;
        let name_len = u16::from_le_bytes(a[26..28].try_into().unwrap()) as usize;
        assert_eq!(&a[30..30 + name_len], b"bootstrap");
        let start = 30 + name_len;
        let mut inflated = Vec::new();
        DeflateDecoder::new(&a[start..start + csize]).read_to_end(&mut inflated).unwrap();
        assert_eq!(inflated, data);
    }

    #[test]
    fn different_input_different_bytes() {
        let a = zip(&[Entry { name: "bootstrap", data: b"one" }]).unwrap();
        let b = zip(&[Entry { name: "bootstrap", data: b"two" }]).unwrap();
        assert_ne!(a, b);
    }
}
