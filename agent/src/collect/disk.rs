//! Disk use per mounted filesystem: mount points from /proc/mounts, sizes from statvfs(3).

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use scs_protocol::Metric;

use super::{read, round1, CollectError, Collector, Report, Roots};

/// Filesystems worth reporting when no explicit mount list is configured: real storage, including
/// the overlay roots of A/B-updated images. Pseudo filesystems (proc, tmpfs, cgroup, ...) and
/// read-only images (squashfs, always 100 % full) are left out.
const REAL_FS: &[&str] =
    &["ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "vfat", "exfat", "ubifs", "jffs2", "overlay", "ntfs", "ntfs3"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub point: String,
    pub fstype: String,
}

/// Undoes the octal escapes /proc/mounts uses for spaces, tabs, newlines and backslashes.
fn unescape(s: &str) -> String {
    let mut rest = s.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&c, tail)) = rest.split_first() {
        if let (b'\\', [d1 @ b'0'..=b'7', d2 @ b'0'..=b'7', d3 @ b'0'..=b'7', after @ ..]) = (c, tail) {
            let v = u32::from(d1 - b'0') * 64 + u32::from(d2 - b'0') * 8 + u32::from(d3 - b'0');
            out.push(v as u8);
            rest = after;
        } else {
            out.push(c);
            rest = tail;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Mount { device: unescape(f.next()?), point: unescape(f.next()?), fstype: f.next()?.to_owned() })
        })
        .collect()
}

/// Which mounts to report: the configured list, or every real filesystem once per device.
pub fn select(mounts: &[Mount], wanted: &[String]) -> Vec<Mount> {
    let mut seen_dev = HashSet::new();
    let mut seen_point = HashSet::new();
    mounts
        .iter()
        .rev() // the last mount on a point is the visible one
        .filter(|m| {
            if wanted.is_empty() {
                REAL_FS.contains(&m.fstype.as_str()) && seen_dev.insert(m.device.clone())
            } else {
                wanted.contains(&m.point)
            }
        })
        .filter(|m| seen_point.insert(m.point.clone()))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    pub used: u64,
    pub avail: u64,
}

/// statvfs(3) of a mount point.
pub fn statvfs(path: &Path) -> std::io::Result<Usage> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a properly sized out-parameter that
    // statvfs fully initialises when it returns 0.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let frsize = if st.f_frsize > 0 { st.f_frsize as u64 } else { st.f_bsize as u64 };
    let total = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    Ok(Usage { total, used: total.saturating_sub(free), avail })
}

pub struct Disk {
    mounts_path: PathBuf,
    wanted: Vec<String>,
}

impl Disk {
    pub fn new(roots: &Roots, wanted: &[String]) -> Disk {
        Disk { mounts_path: roots.proc_file("mounts"), wanted: wanted.to_vec() }
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        let mounts = parse_mounts(&read(&self.mounts_path)?);
        let mut first_err = None;
        for m in select(&mounts, &self.wanted) {
            match statvfs(Path::new(&m.point)) {
                Ok(u) if u.total > 0 => {
                    out.gateway.push(Metric::labelled("disk.total_bytes", &m.point, u.total));
                    out.gateway.push(Metric::labelled("disk.used_bytes", &m.point, u.used));
                    // Like df: the share of what non-root users can use.
                    let usable = u.used + u.avail;
                    if usable > 0 {
                        out.gateway.push(Metric::labelled(
                            "disk.used_pct",
                            &m.point,
                            round1(u.used as f64 * 100.0 / usable as f64),
                        ));
                    }
                }
                Ok(_) => {}
                Err(source) => {
                    first_err.get_or_insert(CollectError::Read { path: PathBuf::from(&m.point), source });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    const MOUNTS: &str = "\
sysfs /sys sysfs rw 0 0
proc /proc proc rw 0 0
/dev/root / ext4 rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/mmcblk0p3 /data ext4 rw 0 0
/dev/mmcblk0p3 /var/lib/bind ext4 rw 0 0
/dev/sda1 /media/my\\040disk vfat rw 0 0
/dev/loop0 /snap/x squashfs ro 0 0
";

    #[test]
    fn selects_real_filesystems_once_per_device() {
        let m = parse_mounts(MOUNTS);
        let points: Vec<String> = select(&m, &[]).into_iter().map(|m| m.point).collect();
        assert_eq!(points, vec!["/", "/var/lib/bind", "/media/my disk"]);
        let points: Vec<String> = select(&m, &["/data".into(), "/run".into()]).into_iter().map(|m| m.point).collect();
        assert_eq!(points, vec!["/run", "/data"]);
    }

    #[test]
    fn reports_real_statvfs_of_fixture_mounts() {
        let t = Tree::new("disk");
        t.write("proc/mounts", "/dev/root / ext4 rw 0 0\n/dev/nope /nonexistent/mount ext4 rw 0 0\n");
        let mut r = Report::default();
        let res = Disk::new(&t.roots(), &[]).collect(&mut r);
        // "/" is real on every test machine; the missing mount is an error but does not hide "/"
        assert!(res.is_err());
        let total = value(&r.gateway, "disk.total_bytes", Some("/")).unwrap();
        let used = value(&r.gateway, "disk.used_bytes", Some("/")).unwrap();
        assert!(total > 0.0 && used <= total);
        let pct = value(&r.gateway, "disk.used_pct", Some("/")).unwrap();
        assert!((0.0..=100.0).contains(&pct));
    }
}
