//! Recorders that write Prometheus text: [`TextRecorder`] streams every batch to a writer
//! (`ktm run` on stdout), [`FileRecorder`] keeps a file holding the latest batch (the
//! node-exporter textfile convention, `ktm run --output`).

use crate::metrics::Batch;
use crate::recorder::FlightRecorder;
use std::io::Write;

/// The Prometheus text of one batch, headed by a comment with its time: whole seconds, then
/// milliseconds in parentheses (a reader that must know whether a batch was collected before
/// or after an event of its own needs more than seconds; `ktm run`'s tests do).
pub fn exposition(batch: &Batch) -> String {
    let t = batch.timestamp.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("# batch at unix time {} ({} ms)\n{}\n", t.as_secs(), t.as_millis(), crate::prometheus::render(batch))
}

/// Streams each batch as Prometheus text (stdout).
pub struct TextRecorder<W: Write + Send>(pub W);

impl<W: Write + Send> FlightRecorder for TextRecorder<W> {
    fn record(&mut self, batch: Batch) {
        if let Err(e) = self.0.write_all(exposition(&batch).as_bytes()).and_then(|_| self.0.flush()) {
            log::error!("cannot write metrics: {e}");
        }
    }
}

/// Replaces a file with each batch, as the node-exporter textfile collector expects: the
/// text goes to a temporary file in the same directory (mode 0644) and is renamed over the
/// file, so a reader sees the previous batch or the new one, never a part, and the file stays
/// one batch long however long KTM runs. Not fsynced: a batch matters until the next one, 10 s
/// later, and never after a crash of the node, while an fsync every interval on BanyanDB's
/// node makes the filesystem commit its journal for KTM, stalling the database's own writes
/// (and, under heavy I/O, took seconds per batch here).
pub struct FileRecorder {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

impl FileRecorder {
    /// Checks that `path` can be written the way [`FileRecorder::replace`] will write it.
    pub fn new(path: &str) -> Result<FileRecorder, String> {
        let path = std::path::PathBuf::from(path);
        let name = path.file_name().ok_or_else(|| format!("--output {}: not a file name", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if path.is_dir() {
            return Err(format!("--output {}: is a directory", path.display()));
        }
        // One fixed temporary name: a run killed between write and rename leaves at most this
        // one file behind, which the next run overwrites.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".ktm-tmp");
        let tmp = dir.join(tmp_name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|_| std::fs::remove_file(&tmp))
            .map_err(|e| format!("--output {}: cannot create files in {}: {e}", path.display(), dir.display()))?;
        Ok(FileRecorder { path, tmp })
    }

    pub fn replace(&self, text: &str) -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.tmp)?;
        // The umask may have narrowed the mode; readers of a textfile need 0644.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path)
    }

    /// Replaces the file with `batch`'s text; on failure no temporary file is left behind.
    pub fn write(&self, batch: &Batch) -> std::io::Result<()> {
        self.replace(&exposition(batch)).inspect_err(|_| {
            let _ = std::fs::remove_file(&self.tmp);
        })
    }
}

impl FlightRecorder for FileRecorder {
    fn record(&mut self, batch: Batch) {
        if let Err(e) = self.write(&batch) {
            log::error!("cannot write metrics to {}: {e}", self.path.display());
        }
    }
}
