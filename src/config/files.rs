//! Facts about files that configuration and what watches it need: whether other
//! users may read one, and a stamp that tells one version of a file from the next.

use std::path::Path;
use std::time::SystemTime;

/// The file's permission bits when other users may read it.
#[cfg(unix)]
pub fn world_readable_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
pub fn world_readable_mode(_: &Path) -> Option<u32> {
    None
}

/// What identifies a version of a file, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The file's stamp now; `None` when it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: meta.modified().ok(), len: meta.len() })
}
