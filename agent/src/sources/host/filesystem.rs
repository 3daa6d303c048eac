//! Filesystem usage: the mount table (`proc/1/mounts`) plus `statvfs(3)`.
//!
//! Mount table lines are `device mount_point fs_type options dump pass`, with
//! space, tab, newline and backslash in paths written as octal escapes
//! (`\040`). PID 1's table is the host's mount namespace; a containerised
//! agent reading `proc/self/mounts` would see its own.
//!
//! Under `root: /host`, the host's `/var` is statted at `/host/var` but
//! reported as `/var`: users want the host's paths, not the agent's.
//!
//! Kubernetes nodes mount hundreds of overlays, tmpfs secrets and
//! projected volumes; the default excludes (see
//! [`super::FilesystemConfig`]) drop those, like node_exporter's defaults,
//! so cardinality stays per-disk, not per-pod.
//!
//! `statvfs` on a dead NFS server blocks forever. Each mount is statted on
//! the blocking pool with a timeout; a mount that timed out is *stuck* and is
//! skipped (and counted) until its hung call returns, so one dead server
//! costs one parked thread, not one per scrape (node_exporter's approach).

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::metric_set::{Kind, MetricBuilder, Stamp, str_attr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// Undoes the kernel's octal escaping of mount table fields.
pub fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mount table. A later mount on the same mount point hides the
/// earlier one, so only the last is kept. Short lines are skipped.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type), Some(options)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let mount = Mount {
            device: unescape(device),
            mount_point: unescape(mount_point),
            fs_type: fs_type.to_string(),
            read_only: options.split(',').any(|o| o == "ro"),
        };
        out.retain(|m| m.mount_point != mount.mount_point);
        out.push(mount);
    }
    out
}

/// What `statvfs` says about one filesystem, in bytes and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub reserved_bytes: u64,
    pub used_inodes: u64,
    pub free_inodes: u64,
}

impl Usage {
    /// From `statvfs` fields: `free` is what an unprivileged user can still
    /// write (`f_bavail`); `reserved` is the root-only rest (`f_bfree - f_bavail`).
    pub fn from_statvfs(
        frsize: u64,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
    ) -> Usage {
        Usage {
            used_bytes: blocks.saturating_sub(bfree).saturating_mul(frsize),
            free_bytes: bavail.saturating_mul(frsize),
            reserved_bytes: bfree.saturating_sub(bavail).saturating_mul(frsize),
            used_inodes: files.saturating_sub(ffree),
            free_inodes: ffree,
        }
    }
}

/// `statvfs(3)` of a path.
pub fn statvfs(path: &std::path::Path) -> std::io::Result<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `s` a valid, writable
    // statvfs struct; the call writes only into `s`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // field widths differ between libcs
    Ok(Usage::from_statvfs(
        s.f_frsize as u64,
        s.f_blocks as u64,
        s.f_bfree as u64,
        s.f_bavail as u64,
        s.f_files as u64,
        s.f_ffree as u64,
    ))
}

/// `system.filesystem.{usage,utilization,inodes.usage}`.
pub fn metrics(filesystems: &[(Mount, Usage)], stamp: Stamp, out: &mut Vec<Metric>) {
    let mut usage = MetricBuilder::new(
        Kind::UpDownCounter,
        "system.filesystem.usage",
        "Filesystem space by state (free: writable by unprivileged users; reserved: root-only)",
        "By",
        stamp,
    );
    let mut util = MetricBuilder::new(
        Kind::Gauge,
        "system.filesystem.utilization",
        "Fraction of the unprivileged capacity in use, as df's Use% shows it",
        "1",
        stamp,
    );
    let mut inodes = MetricBuilder::new(
        Kind::UpDownCounter,
        "system.filesystem.inodes.usage",
        "Inodes by state",
        "{inode}",
        stamp,
    );
    for (m, u) in filesystems {
        let attrs = |state: Option<&str>| {
            let mut a = vec![
                str_attr("system.device", m.device.as_str()),
                str_attr("system.filesystem.mountpoint", m.mount_point.as_str()),
                str_attr("system.filesystem.type", m.fs_type.as_str()),
                str_attr(
                    "system.filesystem.mode",
                    if m.read_only { "ro" } else { "rw" },
                ),
            ];
            if let Some(s) = state {
                a.push(str_attr("system.filesystem.state", s));
            }
            a
        };
        usage.point(attrs(Some("used")), u.used_bytes);
        usage.point(attrs(Some("free")), u.free_bytes);
        usage.point(attrs(Some("reserved")), u.reserved_bytes);
        let capacity = u.used_bytes.saturating_add(u.free_bytes);
        if capacity > 0 {
            util.point(attrs(None), u.used_bytes as f64 / capacity as f64);
        }
        if u.used_inodes > 0 || u.free_inodes > 0 {
            inodes.point(attrs(Some("used")), u.used_inodes);
            inodes.point(attrs(Some("free")), u.free_inodes);
        }
    }
    for m in [usage, util, inodes] {
        m.finish(out);
    }
}
