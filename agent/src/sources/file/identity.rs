//! Which file is which, across renames, truncations, inode reuse and restarts.
//!
//! A file is its `(device, inode)` while it exists: two files whose first
//! lines are identical are still two files (the weakness of checksum-only
//! identities), and a renamed file is still the same file. Inodes are reused
//! once a file is deleted, so each file also carries a **fingerprint**: a
//! CRC-32 of its first bytes (up to `fingerprint.bytes`), plus its birth time
//! where the filesystem records one (`statx`). A checkpoint applies to a file
//! only if inode, fingerprint and birth time all agree.
//!
//! The fingerprint covers as many bytes as the file had when it was taken
//! (its length is stored with it) and grows as the file does, up to the
//! configured size. So a file shorter than the fingerprint is read at once
//! instead of waiting to reach the fingerprint size (a classic "my small log
//! file is never shipped" complaint), at the price of a weaker fingerprint
//! while it is that small; the birth time covers that gap on filesystems
//! that have one.
//!
//! Re-checking the fingerprint before trusting new bytes at an old offset is
//! also how copytruncate is caught when the file has already grown back past
//! our offset by the time we look.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

/// `(device, inode)`: a file's identity while it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Birth time in ns since the epoch, where the filesystem records it.
pub fn birth_ns(meta: &Metadata) -> Option<u64> {
    let t = meta.created().ok()?;
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

/// CRC-32 of a file's first `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub crc: u32,
}

/// What re-reading a file's head says about its fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Same content; `Some` when the file grew and the fingerprint with it.
    Same(Option<Fingerprint>),
    /// The first bytes differ (or are gone): not the content we fingerprinted.
    Changed,
}

impl Fingerprint {
    pub const EMPTY: Fingerprint = Fingerprint { len: 0, crc: 0 };

    /// Reads up to `max` bytes of `file` from offset 0.
    pub fn of(file: &File, max: usize) -> io::Result<Fingerprint> {
        let mut buf = vec![0u8; max];
        let n = read_head(file, &mut buf)?;
        Ok(Fingerprint {
            len: n as u32,
            crc: crc32fast::hash(&buf[..n]),
        })
    }

    /// Checks that `file` still starts with the fingerprinted bytes and
    /// extends the fingerprint up to `max` bytes if the file has grown.
    pub fn check(&self, file: &File, max: usize) -> io::Result<Check> {
        let mut buf = vec![0u8; max.max(self.len as usize)];
        let n = read_head(file, &mut buf)?;
        let len = self.len as usize;
        if n < len {
            return Ok(Check::Changed);
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[..len]);
        if h.clone().finalize() != self.crc {
            return Ok(Check::Changed);
        }
        if n > len && len < max {
            let n = n.min(max);
            h.update(&buf[len..n]);
            return Ok(Check::Same(Some(Fingerprint {
                len: n as u32,
                crc: h.finalize(),
            })));
        }
        Ok(Check::Same(None))
    }

    /// Whether `file` starts with the fingerprinted bytes.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        Ok(matches!(
            self.check(file, self.len as usize)?,
            Check::Same(_)
        ))
    }
}

fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Compressed rotations cannot be tailed; never mistake them for a copy.
fn compressed(name: &str) -> bool {
    [".gz", ".zst", ".bz2", ".xz", ".lz4", ".zip"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Finds `id` among the entries of `dir` (where a renamed file went).
pub fn find_inode(dir: &Path, id: FileId) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if entry.ino() != id.ino {
            continue;
        }
        let path = entry.path();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| FileId::of(&m) == id && m.is_file()) {
            return Some(path);
        }
    }
    None
}

/// A copy of a file that was copytruncated: in `dir`, named like `base`
/// with a suffix (`app.log.1`, `app.log-20240115`), not compressed, at
/// least `min_len` long, starting with the fingerprinted bytes, and not
/// `not` itself. The most recently modified candidate wins.
pub fn find_copy(
    dir: &Path,
    base: &str,
    fp: Fingerprint,
    min_len: u64,
    not: FileId,
) -> Option<(PathBuf, File, Metadata)> {
    let mut best: Option<(PathBuf, File, Metadata)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() <= base.len() || !name.starts_with(base) || compressed(name) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() || FileId::of(&meta) == not || meta.len() < min_len {
            continue;
        }
        if !fp.matches(&file).unwrap_or(false) {
            continue;
        }
        let newer = best
            .as_ref()
            .is_none_or(|(_, _, b)| meta.modified().ok() > b.modified().ok());
        if newer {
            best = Some((path, file, meta));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_grows_with_the_file_and_catches_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"short\n").unwrap();
        let f = File::open(&path).unwrap();
        let fp = Fingerprint::of(&f, 16).unwrap();
        assert_eq!(fp.len, 6);
        assert_eq!(fp.check(&f, 16).unwrap(), Check::Same(None));

        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"and a longer tail\n").unwrap();
        let Check::Same(Some(grown)) = fp.check(&f, 16).unwrap() else {
            panic!("should have grown")
        };
        assert_eq!(grown, Fingerprint::of(&f, 16).unwrap());
        assert_eq!(grown.len, 16);

        // Truncated and rewritten (copytruncate): the head differs.
        std::fs::write(&path, b"other content that is long\n").unwrap();
        assert_eq!(grown.check(&f, 16).unwrap(), Check::Changed);
        // Truncated to less than the fingerprint: changed too.
        std::fs::write(&path, b"sho").unwrap();
        assert_eq!(fp.check(&f, 16).unwrap(), Check::Changed);
    }

    #[test]
    fn finds_renamed_files_and_copies() {
        let dir = tempfile::tempdir().unwrap();
        let orig = dir.path().join("app.log");
        std::fs::write(&orig, b"line one\nline two\n").unwrap();
        let f = File::open(&orig).unwrap();
        let id = FileId::of(&f.metadata().unwrap());
        let fp = Fingerprint::of(&f, 256).unwrap();

        std::fs::rename(&orig, dir.path().join("app.log.1")).unwrap();
        assert_eq!(
            find_inode(dir.path(), id),
            Some(dir.path().join("app.log.1"))
        );

        // A copy with the same head and enough length is found; a shorter one,
        // a compressed one or one with another head is not.
        std::fs::write(dir.path().join("app.log.2"), b"line one\n").unwrap();
        std::fs::write(dir.path().join("app.log.3.gz"), b"line one\nline two\n").unwrap();
        std::fs::write(dir.path().join("app.log.4"), b"different\nline two\n").unwrap();
        std::fs::write(dir.path().join("other.log"), b"line one\nline two\n").unwrap();
        std::fs::write(&orig, b"").unwrap();
        let new_id = FileId::of(&std::fs::metadata(&orig).unwrap());
        let (path, _, _) = find_copy(dir.path(), "app.log", fp, 18, new_id).unwrap();
        assert_eq!(path, dir.path().join("app.log.1"));
        assert!(find_copy(dir.path(), "app.log", fp, 19, new_id).is_none());
    }
}
