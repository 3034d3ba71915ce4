//! How much Kiln reads of what it is handed: `[limits]` in `kiln.toml`.
//!
//! ```toml
//! [limits]
//! input_size = "4GiB"     # a file a pipeline reads into memory
//! upload_size = "16GiB"   # a REST upload (dataset version, artifact)
//! plugin_size = "256MiB"  # a component `kiln plugin add` reads
//! ```
//!
//! Every such read is of a regular file (a device, FIFO or socket is
//! refused by name) and stops at the limit, so `/dev/zero` or an endless
//! upload costs an error, not the machine's memory or disk.

use serde::{Deserialize, Deserializer};
use std::path::Path;

/// A CSV file with more columns than this is refused (the header alone
/// says so): every column costs memory whatever the number of rows.
pub const MAX_COLUMNS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizeLimits {
    #[serde(deserialize_with = "size")]
    pub input_size: u64,
    #[serde(deserialize_with = "size")]
    pub upload_size: u64,
    #[serde(deserialize_with = "size")]
    pub plugin_size: u64,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits { input_size: 4 << 30, upload_size: 16 << 30, plugin_size: 256 << 20 }
    }
}

/// `"512MiB"` or a number of bytes.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(t) => kiln_types::size::parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// Open `path` for reading if it is a regular file of at most `limit`
/// bytes; `key` is the `[limits]` key that sets the limit, if one does (a
/// refusal names it). The checks are made on the opened file, so a path
/// swapped after a check cannot slip through.
pub fn open_regular(path: &Path, limit: u64, key: Option<&str>) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: opening a FIFO for reading would otherwise wait for a
    // writer forever. A regular file ignores the flag.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)?;
    check_regular(&file, limit, key)?;
    Ok(file)
}

/// The bytes of a file Kiln reads whole (a plugin component): a regular
/// file of at most `limit` bytes (see [`open_regular`]). A file that grows
/// after the check is still read only up to the limit.
pub fn read_bytes(path: &Path, limit: u64, key: Option<&str>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path, limit, key)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The text of a small file Kiln reads whole (a pipeline, a pointer,
/// `kiln.toml`), under a fixed `limit`.
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_bytes(path, limit, None)?).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

/// Refuse anything but a regular file of at most `limit` bytes (`key`: as
/// for [`open_regular`]).
pub fn check_regular(file: &std::fs::File, limit: u64, key: Option<&str>) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("is {}, not a regular file", kind_of(&meta))));
    }
    if meta.len() > limit {
        let hint = key.map(|k| format!(" (`{k}` under [limits] in kiln.toml)")).unwrap_or_default();
        return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, format!("is {} bytes, over the limit of {limit} bytes{hint}", meta.len())));
    }
    Ok(())
}

/// "a FIFO", "a character device", …, for messages.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused_by_kind() {
        let e = open_regular(Path::new("/dev/zero"), 1 << 30, Some("input_size")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
        // Opening a FIFO for reading blocks until a writer comes: the
        // refusal must come from a non-blocking look first.
        let e = open_regular(&fifo, 1 << 30, Some("input_size")).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn sizes_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, [0u8; 100]).unwrap();
        assert!(open_regular(&f, 100, Some("input_size")).is_ok());
        let e = open_regular(&f, 99, Some("input_size")).unwrap_err();
        assert!(e.to_string().contains("limit of 99 bytes") && e.to_string().contains("input_size"), "{e}");
        let l: SizeLimits = toml::from_str("input_size = \"1KiB\"\nplugin_size = 5").unwrap();
        assert_eq!((l.input_size, l.plugin_size, l.upload_size), (1024, 5, SizeLimits::default().upload_size));
    }
}
