//! Reproducible zip archives for Lambda, written with the `zip` crate: entries in a fixed
//! order, a fixed timestamp (1980-01-01 00:00, the DOS epoch), fixed Unix permissions,
//! deflate at a fixed level and no extra fields. The same input bytes always give the same
//! zip bytes, so a zip's SHA-256 identifies its contents.

use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Unix permissions of every entry: rwxr-xr-x (Lambda needs `bootstrap` executable).
const UNIX_MODE: u32 = 0o755;
/// Deflate level (flate2's best compression).
const DEFLATE_LEVEL: i64 = 9;

/// One file to put in the archive.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Path inside the archive.
    pub name: &'a str,
    /// File contents.
    pub data: &'a [u8],
}

/// An archive that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    /// A file too large for a plain (non-ZIP64) archive.
    #[error("{0} is larger than 4 GiB, which Lambda would refuse anyway")]
    TooLarge(String),
    /// The zip writer failed.
    #[error("cannot write {name} into the zip: {source}")]
    Write { name: String, source: zip::result::ZipError },
}

/// The options every entry gets: nothing that depends on the machine or the clock.
fn options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL))
        .last_modified_time(DateTime::DEFAULT)
        .unix_permissions(UNIX_MODE)
        .large_file(false)
}

/// Builds the archive in memory; entries are sorted by name first.
pub fn zip(entries: &[Entry<'_>]) -> Result<Vec<u8>, ZipError> {
    let mut sorted: Vec<&Entry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for entry in sorted {
        if u32::try_from(entry.data.len()).is_err() {
            return Err(ZipError::TooLarge(entry.name.to_owned()));
        }
        let failed = |source| ZipError::Write { name: entry.name.to_owned(), source };
        writer.start_file(entry.name, options()).map_err(failed)?;
        writer.write_all(entry.data).map_err(|e| failed(e.into()))?;
    }
    let done = writer.finish().map_err(|source| ZipError::Write { name: "the archive".to_owned(), source })?;
    Ok(done.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_back(archive: &[u8]) -> Vec<(String, u32, DateTime, Vec<u8>)> {
        let mut zip = zip::ZipArchive::new(Cursor::new(archive)).expect("a readable zip");
        (0..zip.len())
            .map(|i| {
                let mut f = zip.by_index(i).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                let name = f.name().unwrap().into_owned();
                assert_eq!(f.compression(), CompressionMethod::Deflated, "{name}");
                (name, f.unix_mode().unwrap(), f.last_modified().unwrap(), data)
            })
            .collect()
    }

    #[test]
    fn same_input_same_bytes_and_readable() {
        let data = b"#!/bin/sh\necho hi\n".repeat(100);
        let a = zip(&[Entry { name: "bootstrap", data: &data }]).unwrap();
        let b = zip(&[Entry { name: "bootstrap", data: &data }]).unwrap();
        assert_eq!(a, b);
        let entries = read_back(&a);
        assert_eq!(entries.len(), 1);
        let (name, mode, modified, inflated) = &entries[0];
        assert_eq!(name, "bootstrap");
        assert_eq!(mode & 0o777, 0o755, "executable");
        assert_eq!(*modified, DateTime::DEFAULT, "fixed 1980-01-01 timestamp");
        assert_eq!(inflated, &data);
        assert!(a.len() < data.len() / 4, "deflated: {} bytes for {}", a.len(), data.len());
        // Local header: no flags (sizes in the header, no data descriptor), no extra fields.
        assert_eq!(&a[..4], b"PK\x03\x04");
        assert_eq!(u16::from_le_bytes([a[6], a[7]]), 0, "flags");
        assert_eq!(u16::from_le_bytes([a[28], a[29]]), 0, "extra field length");
    }

    #[test]
    fn entry_order_does_not_change_the_bytes() {
        let one = Entry { name: "bootstrap", data: b"one" };
        let two = Entry { name: "config.json", data: b"{}" };
        let a = zip(&[one.clone(), two.clone()]).unwrap();
        let b = zip(&[two, one]).unwrap();
        assert_eq!(a, b);
        let names: Vec<String> = read_back(&a).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["bootstrap", "config.json"]);
    }

    /// The SHA-256 of a fixed input's zip, pinned: a change of the zip crate (or of its
    /// options here) that changes the bytes shows up as this diff, and with it a new code
    /// hash for every function on the next deploy.
    #[test]
    fn a_fixed_input_has_a_pinned_hash() {
        use sha2::{Digest, Sha256};
        let data = b"\x7fELF pretend binary\n".repeat(64);
        let zipped = zip(&[Entry { name: "bootstrap", data: &data }]).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&zipped)),
            "3c8e694087acdb2bfa2f5d59c5f014d9da23fee74cc62c0cb189abe4c9f36877"
        );
    }

    #[test]
    fn different_input_different_bytes() {
        let a = zip(&[Entry { name: "bootstrap", data: b"one" }]).unwrap();
        let b = zip(&[Entry { name: "bootstrap", data: b"two" }]).unwrap();
        assert_ne!(a, b);
    }
}
