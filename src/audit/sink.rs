//! Where sealed records are written: an append-only file rotated by size and age, or standard
//! output. The file sink finds where the chain stands at start (the last record of the newest
//! file), so the chain continues across rotation and restarts.
//!
//! Files: the active one at `path`; rotated ones beside it as `{path}.{first seq, 20 digits}`,
//! which sort in chain order.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::chain::{self, Tail};

/// A destination for batches of sealed lines.
pub trait Sink: Send {
    /// Writes `batch` (whole lines) whose first record is `first_seq`; on error nothing of it
    /// is kept, so the same batch can be written again.
    ///
    /// # Errors
    /// The I/O error.
    fn write(&mut self, batch: &[u8], first_seq: u64) -> io::Result<()>;

    /// Makes what was written durable (fsync).
    ///
    /// # Errors
    /// The I/O error.
    fn sync(&mut self) -> io::Result<()>;
}

/// Standard output; each process starts a new chain.
pub struct Stdout;

impl Sink for Stdout {
    fn write(&mut self, batch: &[u8], _first_seq: u64) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(batch)?;
        out.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

/// The active audit file and its rotation.
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    file: Option<File>,
    /// Bytes in the active file.
    len: u64,
    /// `seq` of the active file's first record, and when it was written.
    first: Option<(u64, SystemTime)>,
    dirty: bool,
}

impl FileSink {
    /// Opens the sink at `path` and reads where the chain stands. A last line cut short (a
    /// crash mid-write) is left as evidence: the file is rotated and the chain goes on from
    /// the last whole record.
    ///
    /// # Errors
    /// The I/O error, or a newest file whose last whole line is not a sealed record.
    pub fn open(path: &Path, max_bytes: u64, max_age: Duration) -> io::Result<(Self, Tail)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut sink = Self {
            path: path.to_path_buf(),
            max_bytes,
            max_age,
            file: None,
            len: 0,
            first: None,
            dirty: false,
        };
        let newest = if nonempty(path)? {
            Some(path.to_path_buf())
        } else {
            rotated(path)?.pop()
        };
        let Some(newest) = newest else {
            return Ok((sink, Tail::START));
        };
        let (mut tail, torn) = tail_of(&newest)?;
        if tail.is_none() && newest == path {
            // Only a cut-short record in the active file: the chain stands where the newest
            // rotated file ends.
            if let Some(previous) = rotated(path)?.pop() {
                tail = tail_of(&previous)?.0;
            }
        }
        let tail = tail.unwrap_or(Tail::START);
        if newest == path {
            let first = first_record(path)?;
            if torn {
                tracing::error!(file = %path.display(), "the audit file ends in a record cut short (a crash mid-write?); it is rotated as it is, and `mcpgate audit verify` will name the line");
                sink.rotate(first.map_or(tail.seq + 1, |(seq, _)| seq))?;
            } else {
                sink.first = first;
                sink.len = std::fs::metadata(path)?.len();
            }
        }
        Ok((sink, tail))
    }

    /// The active file, opened for appending.
    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            {
                // Who called what: readable by the owner and its group (a log shipper), no one
                // else.
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o640);
            }
            let file = options.open(&self.path)?;
            self.len = file.metadata()?.len();
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("audit file not open"))
    }

    /// Renames the active file to its rotated name (its first record is `first_seq`).
    fn rotate(&mut self, first_seq: u64) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        let rotated = rotated_name(&self.path, first_seq);
        std::fs::rename(&self.path, &rotated)?;
        if let Some(dir) = self.path.parent() {
            // The rename is durable once the directory is (POSIX).
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        tracing::info!(file = %rotated.display(), "audit file rotated");
        self.len = 0;
        self.first = None;
        Ok(())
    }

    fn due(&self, incoming: usize) -> Option<u64> {
        let (first_seq, since) = self.first?;
        let full = self.len > 0 && self.len + incoming as u64 > self.max_bytes;
        let old = since.elapsed().unwrap_or_default() >= self.max_age;
        (full || old).then_some(first_seq)
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &[u8], first_seq: u64) -> io::Result<()> {
        if let Some(first) = self.due(batch.len()) {
            self.rotate(first)?;
        }
        let before = self.len;
        let file = self.file()?;
        if let Err(e) = file.write_all(batch) {
            // Nothing of a failed batch stays: it is written again, whole, on the retry.
            let _ = file.set_len(before);
            return Err(e);
        }
        self.len = before + batch.len() as u64;
        self.first.get_or_insert((first_seq, SystemTime::now()));
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.dirty
            && let Some(file) = &self.file
        {
            file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// `{path}.{first_seq:020}`.
pub fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{first_seq:020}"));
    PathBuf::from(name)
}

/// The rotated files of `path`, oldest first.
pub fn rotated(path: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(stem) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{stem}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

fn nonempty(path: &Path) -> io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Where the chain stands at the end of `path` (`None` without a whole record), and whether
/// a record cut short follows.
fn tail_of(path: &Path) -> io::Result<(Option<Tail>, bool)> {
    let (last, torn) = last_line(path)?;
    let Some(line) = last else {
        return Ok((None, torn));
    };
    let sealed = chain::open(&line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: last record: {e}", path.display()),
        )
    })?;
    let tail = Tail {
        seq: sealed.seq,
        hash: sealed.hash,
    };
    Ok((Some(tail), torn))
}

/// `seq` and `ts` of the first record of `path`, if it has a whole one.
fn first_record(path: &Path) -> io::Result<Option<(u64, SystemTime)>> {
    let mut head = Vec::new();
    File::open(path)?.take(1 << 20).read_to_end(&mut head)?;
    let Some(end) = head.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    let line = &head[..end];
    let Ok(sealed) = chain::open(line) else {
        return Ok(None);
    };
    let ts = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["ts"].as_str().map(str::to_string))
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .unwrap_or_else(SystemTime::now);
    Ok(Some((sealed.seq, ts)))
}

/// The last whole line of `path` (without its `\n`), and whether bytes follow it that are not
/// a whole line (a record cut short).
fn last_line(path: &Path) -> io::Result<(Option<Vec<u8>>, bool)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut file).take(len - start).read_to_end(&mut buf)?;
        let torn = buf.last().is_some_and(|b| *b != b'\n');
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                return Ok((None, torn));
            }
            window *= 2;
            continue;
        };
        match buf[..end].iter().rposition(|b| *b == b'\n') {
            Some(begin) => return Ok((Some(buf[begin + 1..end].to_vec()), torn)),
            None if start == 0 => return Ok((Some(buf[..end].to_vec()), torn)),
            None => window *= 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::Chain;
    use super::*;

    fn seal(chain: &mut Chain, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            chain.seal(format!("{{\"n\":{i}}}").as_bytes(), &mut out);
        }
        out
    }

    #[test]
    fn rotation_by_size_and_the_chain_position_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let (mut sink, tail) = FileSink::open(&path, 400, Duration::from_secs(3600)).expect("open");
        assert_eq!(tail, Tail::START);
        let mut chain = Chain::new(None, tail);
        for _ in 0..5 {
            let first = chain.tail().seq + 1;
            let batch = seal(&mut chain, 2);
            sink.write(&batch, first).expect("write");
        }
        sink.sync().expect("sync");
        let rotated = rotated(&path).expect("list");
        assert!(rotated.len() >= 2, "rotated by size: {rotated:?}");
        assert!(
            rotated[0]
                .to_string_lossy()
                .ends_with(".00000000000000000001")
        );
        drop(sink);
        let (_, tail) = FileSink::open(&path, 400, Duration::from_secs(3600)).expect("reopen");
        assert_eq!(tail, chain.tail(), "the chain goes on from the last record");
    }

    #[test]
    fn a_torn_last_line_is_kept_and_the_chain_goes_on_from_the_whole_record_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let mut chain = Chain::new(None, Tail::START);
        let mut bytes = seal(&mut chain, 3);
        let whole = chain.tail();
        bytes.extend_from_slice(br#"{"seq":4,"prev":"ab"#);
        std::fs::write(&path, &bytes).expect("write");
        let (_, tail) = FileSink::open(&path, 1 << 20, Duration::from_secs(60)).expect("open");
        assert_eq!(tail, whole);
        assert!(!path.exists(), "the torn file was rotated away");
        assert_eq!(rotated(&path).expect("list").len(), 1);
    }
}
