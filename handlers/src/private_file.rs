//! Files that hold secrets or their hashes (the dev key, the admin token, key records):
//! created with mode 0600 from the first byte, written whole, then renamed into place.
//!
//! The temporary file is opened with `O_CREAT | O_EXCL` (`create_new`) under a name no
//! one else uses, so it never follows a symlink planted in the directory and is never
//! readable by others, not even for an instant; `rename` replaces whatever is at the
//! target (a symlink included) instead of writing through it.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` atomically, readable and writable by the owner only.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let nonce: u64 = rand::random();
    let tmp = path.with_file_name(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and its parents) if missing; a directory this creates is 0700.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_a_planted_symlink_is_replaced_not_followed() {
        let dir = std::env::temp_dir().join(format!("wsctl-private-{}", rand::random::<u64>()));
        create_dir(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let target = dir.join("admin-token");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write(&target, b"secret").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched", "the symlink was not followed");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
