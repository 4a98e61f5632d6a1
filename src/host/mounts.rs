//! The mount table of this process, `/proc/self/mountinfo`: the one reader of it that tracefs,
//! securityfs (the lockdown mode) and the cgroup v2 lookup share.
//!
//! mountinfo rather than `/proc/mounts` because only mountinfo has the root of the mount
//! within its filesystem, which is needed to map a `/proc/<pid>/cgroup` path to a directory.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Where the kernel shows this process its mounts.
pub const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo (the fields KTM uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory of the filesystem that appears at `mount_point` (field 4).
    pub root: PathBuf,
    /// Where it is mounted, as seen by the reading process (field 5).
    pub mount_point: PathBuf,
    /// Filesystem type, after the ` - ` separator.
    pub fstype: String,
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

/// Reads and parses the mountinfo file at `path` (`/proc/self/mountinfo`, or a fake tree's).
pub fn read(path: &Path) -> std::io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read(path)?))
}

/// This process's mounts.
pub fn own() -> std::io::Result<Vec<MountEntry>> {
    read(Path::new(SELF_MOUNTINFO))
}

/// The mount points of filesystems of type `fstype`, in mountinfo's order.
pub fn of_type<'a>(mounts: &'a [MountEntry], fstype: &'a str) -> impl Iterator<Item = &'a Path> + 'a {
    mounts.iter().filter(move |m| m.fstype == fstype).map(|m| m.mount_point.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_and_types() {
        let text = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 master:2 - cgroup2 cgroup2 rw\n\
                    36 24 0:12 / /sys/kernel/tracing rw - tracefs tracefs rw\n";
        let entries = parse_mountinfo(text.as_bytes());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].fstype, "cgroup2");
        assert_eq!(of_type(&entries, "tracefs").collect::<Vec<_>>(), vec![Path::new("/sys/kernel/tracing")]);
        assert_eq!(of_type(&entries, "debugfs").count(), 0);
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
    fn malformed_lines_are_skipped() {
        let text = "garbage\n1 2 3\n1 2 3 / /x rw no-separator cgroup2\n\u{0}\n41 31 0:38 / /u rw - cgroup2 cgroup2 rw\n1 2 3 4 5 6 -\n";
        let entries = parse_mountinfo(text.as_bytes());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, PathBuf::from("/u"));
    }

    #[test]
    fn own_table_has_proc() {
        assert!(own().unwrap().iter().any(|m| m.fstype == "proc"));
    }
}
