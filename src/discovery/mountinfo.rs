//! Finding the cgroup v2 mount in `/proc/self/mountinfo`.
//!
//! The mount is not always `/sys/fs/cgroup`: hybrid hosts (like the CI host) keep v1
//! controllers there and cgroup2 at `/sys/fs/cgroup/unified`, and containers may mount a
//! subtree. mountinfo rather than `/proc/mounts` because only mountinfo has the root of the
//! mount within the hierarchy, which is needed to map a `/proc/<pid>/cgroup` path to a
//! directory.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::error::DiscoveryError;
use super::roots::Roots;

/// One line of mountinfo (the fields discovery uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory of the filesystem that appears at `mount_point` (field 4).
    pub root: PathBuf,
    /// Where it is mounted, as seen by the reading process (field 5).
    pub mount_point: PathBuf,
    /// Filesystem type, after the ` - ` separator.
    pub fstype: String,
}

/// Where the cgroup v2 hierarchy is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// The mount point as mountinfo names it (not prefixed with [`Roots::sysroot`]).
    pub mount_point: PathBuf,
    /// The cgroup that appears at the mount point: `/` unless a subtree was mounted.
    pub root: PathBuf,
    /// `mount_point` under [`Roots::sysroot`], where its directories can be read.
    pub dir: PathBuf,
}

/// Parses mountinfo, skipping lines that do not have the documented shape rather than
/// failing: one odd line must not hide the cgroup2 mount.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// six fixed fields, zero or more optional fields, `-`, fstype, source, super options.
fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).collect();
    let sep = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    let fstype = fields.get(sep + 1)?;
    Some(MountEntry {
        root: PathBuf::from(OsString::from_vec(unescape(fields.get(3)?))),
        mount_point: PathBuf::from(OsString::from_vec(unescape(fields.get(4)?))),
        fstype: String::from_utf8_lossy(&unescape(fstype)).into_owned(),
    })
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash); anything else is kept as is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if let (b'\\', Some(digits)) = (field[i], field.get(i + 1..i + 4)) {
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Picks the cgroup2 mount from parsed mountinfo: the first whose root is `/` (the whole
/// hierarchy is visible through it), else the first at all.
pub fn select_cgroup2(entries: &[MountEntry]) -> Option<&MountEntry> {
    let mut v2 = entries.iter().filter(|e| e.fstype == "cgroup2");
    let first = v2.clone().next();
    v2.find(|e| e.root.as_os_str() == "/").or(first)
}

/// Finds the cgroup v2 mount of the process running discovery.
pub fn find_cgroup2(roots: &Roots) -> Result<Cgroup2Mount, DiscoveryError> {
    let path = roots.proc.join("self/mountinfo");
    let text = std::fs::read(&path).map_err(|e| DiscoveryError::io(&path, e))?;
    let entries = parse_mountinfo(&text);
    let e = select_cgroup2(&entries).ok_or(DiscoveryError::Cgroup2NotMounted { mountinfo: path })?;
    Ok(Cgroup2Mount {
        mount_point: e.mount_point.clone(),
        root: e.root.clone(),
        dir: roots.under_sysroot(&e.mount_point),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_has_cgroup2_under_unified() {
        let entries = parse_mountinfo(HYBRID.as_bytes());
        assert_eq!(entries.len(), 5);
        let m = select_cgroup2(&entries).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, PathBuf::from("/"));
    }

    #[test]
    fn pure_v2_with_optional_fields() {
        let text = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let entries = parse_mountinfo(text.as_bytes());
        let m = select_cgroup2(&entries).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(m.fstype, "cgroup2");
    }

    #[test]
    fn none_found() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        assert!(select_cgroup2(&parse_mountinfo(text.as_bytes())).is_none());
        assert!(select_cgroup2(&parse_mountinfo(b"")).is_none());
    }

    #[test]
    fn escaped_paths() {
        let text = "50 1 0:40 /kube\\040pods/a\\134b /mnt/my\\040cgroup\\011x rw - cgroup2 none rw\n";
        let e = &parse_mountinfo(text.as_bytes())[0];
        assert_eq!(e.mount_point, PathBuf::from("/mnt/my cgroup\tx"));
        assert_eq!(e.root, PathBuf::from("/kube pods/a\\b"));
        // A backslash not followed by three octal digits stays literal; \777 is not a byte.
        assert_eq!(unescape(b"a\\x\\07\\777\\"), b"a\\x\\07\\777\\".to_vec());
    }

    #[test]
    fn prefers_a_mount_of_the_whole_hierarchy() {
        let text = "\
60 1 0:40 /kubepods/pod1 /var/lib/x rw - cgroup2 cgroup2 rw
61 1 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        let entries = parse_mountinfo(text.as_bytes());
        assert_eq!(select_cgroup2(&entries).unwrap().mount_point, PathBuf::from("/sys/fs/cgroup"));
        let only_subtree = &entries[..1];
        assert_eq!(select_cgroup2(only_subtree).unwrap().root, PathBuf::from("/kubepods/pod1"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n1 2 3\n1 2 3 / /x rw no-separator cgroup2\n\u{0}\n41 31 0:38 / /u rw - cgroup2 cgroup2 rw\n1 2 3 4 5 6 -\n";
        let entries = parse_mountinfo(text.as_bytes());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, PathBuf::from("/u"));
    }
}
