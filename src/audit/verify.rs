//! `mcpgate audit verify`: checks audit files as one chain — every line a sealed record whose
//! `hash` matches its canonical bytes (under the key, if one is given), `seq` one more than the
//! record before, `prev` that record's `hash` — and names the first record that breaks it.
//!
//! Files are taken in chain order whatever order they are given in (by the `seq` of their first
//! record). The chain must start at `seq` 1 unless `partial` is set (older files removed by a
//! retention policy): then its first record is trusted as the anchor and reported. What cannot
//! be seen from the files alone: whole records removed from the end of the newest file; compare
//! the last `seq` reported with `mcpgate_audit_records_total` or a copy kept elsewhere.

use std::io::{self, BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain::{self, GENESIS};

/// The result of a verification.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Whether the chain is intact.
    pub intact: bool,
    /// Whether hashes were checked as HMACs with a key.
    pub keyed: bool,
    /// Records checked up to the break (all of them when intact).
    pub records: u64,
    /// `seq` of the first record.
    pub first_seq: Option<u64>,
    /// `seq` and `hash` of the last intact record.
    pub last_seq: Option<u64>,
    /// Hex `hash` of the last intact record.
    pub last_hash: Option<String>,
    /// The files in the order checked.
    pub files: Vec<PathBuf>,
    /// The first record that breaks the chain.
    pub first_break: Option<Break>,
}

/// Where and why the chain breaks.
#[derive(Debug, Serialize)]
pub struct Break {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Verifies `files` as one chain.
///
/// # Errors
/// When a file cannot be read.
pub fn verify(files: &[PathBuf], key: Option<&[u8; 32]>, partial: bool) -> io::Result<Report> {
    let mut ordered = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        ordered.push((first_seq(file)?.unwrap_or(u64::MAX), i, file.clone()));
    }
    ordered.sort();
    let mut report = Report {
        intact: true,
        keyed: key.is_some(),
        records: 0,
        first_seq: None,
        last_seq: None,
        last_hash: None,
        files: ordered.iter().map(|(_, _, f)| f.clone()).collect(),
        first_break: None,
    };
    let mut last: Option<(u64, [u8; 32])> = None;
    for (_, _, file) in &ordered {
        let mut reader = BufReader::new(std::fs::File::open(file)?);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            number += 1;
            let broken = |reason: String| Break {
                file: file.clone(),
                line: number,
                reason,
            };
            let whole = line.last() == Some(&b'\n');
            if !whole {
                report.first_break = Some(broken(
                    "the file ends in the middle of a record (a write cut short or the file truncated)".into(),
                ));
                break;
            }
            let text = &line[..line.len() - 1];
            if let Err(reason) = check(text, key, last, partial) {
                report.first_break = Some(broken(reason));
                break;
            }
            let sealed = chain::open(text).map_err(io::Error::other)?;
            report.first_seq.get_or_insert(sealed.seq);
            last = Some((sealed.seq, sealed.hash));
            report.records += 1;
        }
        if report.first_break.is_some() {
            break;
        }
    }
    report.intact = report.first_break.is_none();
    report.last_seq = last.map(|(s, _)| s);
    report.last_hash = last.map(|(_, h)| base16ct::lower::encode_string(&h));
    Ok(report)
}

/// Checks one line against the record before it (`None` for the first).
fn check(
    line: &[u8],
    key: Option<&[u8; 32]>,
    before: Option<(u64, [u8; 32])>,
    partial: bool,
) -> Result<(), String> {
    let sealed = chain::open(line).map_err(|e| e.to_string())?;
    if !sealed.hash_matches(key) {
        return Err(if key.is_some() {
            "hash does not match the record: it was edited, or sealed with another key".into()
        } else {
            "hash does not match the record: it was edited (or it was sealed with a key: pass --key-file)".into()
        });
    }
    match before {
        None if partial => Ok(()),
        None if sealed.seq != 1 || sealed.prev != GENESIS => Err(format!(
            "the chain starts at seq {} instead of 1: earlier records or files are missing (pass --partial to accept a chain whose older files were removed)",
            sealed.seq
        )),
        None => Ok(()),
        Some((seq, _)) if sealed.seq != seq + 1 => Err(format!(
            "seq {} where {} was expected: records deleted, reordered or inserted",
            sealed.seq,
            seq + 1
        )),
        Some((_, hash)) if sealed.prev != hash => Err(
            "prev is not the hash of the record before: records deleted, reordered or replaced"
                .into(),
        ),
        Some(_) => Ok(()),
    }
}

/// `seq` of the first record of `path`, if its first line is a sealed record.
fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(chain::open(&line).ok().map(|s| s.seq))
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..{b}"),
            _ => "no records".into(),
        };
        match &self.first_break {
            None => write!(
                f,
                "intact: {} record(s), {span}, {} file(s){}; last hash {}",
                self.records,
                self.files.len(),
                if self.keyed { ", HMAC checked" } else { "" },
                self.last_hash.as_deref().unwrap_or("-")
            ),
            Some(b) => write!(
                f,
                "BROKEN at {}:{}: {}\n({} record(s) intact before it, {span})",
                b.file.display(),
                b.line,
                b.reason,
                self.records
            ),
        }
    }
}
