//! The audit trail of personal-data lookups: one JSON Lines record per lookup (KRR's
//! `personer` and `person`, authlevel, the simulator's `HentPersoner`), appended before the
//! answer goes out. A lookup whose record cannot be written fails (fail closed).
//!
//! - A personidentifikator appears only as HMAC-SHA-256 under the audit key, never as the
//!   number: a data-protection officer finds one person's lookups by computing it
//!   (`portvakt audit search`).
//! - Each record carries the SHA-256 of the line before it (`prev`) and its own HMAC (`mac`) over
//!   everything else, so a changed, removed or reordered record breaks the chain where it
//!   happened (`portvakt audit verify`). The chain runs on across files: a file is closed at
//!   `max_file_bytes` and the next one continues from its last line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lc_rs::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::admin::metrics::Metrics;
use crate::config::{AuditSettings, Fsync};
use crate::error::{Context, Error, Result};

/// The chain's start: no record before it.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller says about one lookup.
pub struct Lookup<'a> {
    pub request_id: &'a str,
    pub client_id: Option<&'a str>,
    pub consumer_orgno: Option<&'a str>,
    pub on_behalf_of: Option<&'a str>,
    /// Which API: `krr-personer`, `krr-person`, `authlevel`, `oppslag-HentPersoner`, …
    pub route: &'a str,
    pub scopes: &'a [String],
    pub pids: &'a [String],
    /// `ok`, or what went wrong (`not_found`, `backend_error`, …).
    pub outcome: &'a str,
}

/// One record as written (`mac` last).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub request_id: String,
    pub client_id: Option<String>,
    pub consumer_orgno: Option<String>,
    pub on_behalf_of: Option<String>,
    pub route: String,
    pub scopes: Vec<String>,
    pub persons: usize,
    /// HMAC-SHA-256 (hex) of each personidentifikator.
    pub pids: Vec<String>,
    pub outcome: String,
    /// SHA-256 (hex) of the previous line, or zeros for the first record.
    pub prev: String,
}

/// The audit key, for pid hashes and record MACs (each under its own label).
#[derive(Clone)]
pub struct AuditKey(hmac::Key);

impl AuditKey {
    pub fn new(secret: &[u8]) -> AuditKey {
        AuditKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(label);
        context.update(data);
        hex(context.sign().as_ref())
    }

    pub fn pid(&self, pid: &str) -> String {
        self.mac(b"pid\0", pid.as_bytes())
    }

    fn record(&self, body: &str) -> String {
        self.mac(b"record\0", body.as_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn line_hash(line: &str) -> String {
    hex(digest::digest(&digest::SHA256, line.as_bytes()).as_ref())
}

struct Writer {
    file: File,
    sequence: u64,
    written: u64,
    prev: String,
    last_sync: Instant,
}

pub struct AuditLog {
    dir: PathBuf,
    key: AuditKey,
    fsync: Fsync,
    max_file_bytes: u64,
    writer: Mutex<Writer>,
    metrics: Arc<Metrics>,
}

/// `audit-00000001.jsonl`, …: the sequence orders the files of one chain.
fn file_name(sequence: u64) -> String {
    format!("audit-{sequence:08}.jsonl")
}

fn sequence_of(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("audit-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// The files of a chain in `dir`, in order.
pub fn chain_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter_map(|path| sequence_of(&path).map(|s| (s, path)))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// The last line of a file (its length as the file system reports it bounds the read).
fn last_line(path: &Path) -> Result<Option<String>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = length.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start)).with_context(|| format!("cannot read {}", path.display()))?;
    let mut tail = Vec::new();
    file.take(length - start).read_to_end(&mut tail).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&tail);
    Ok(text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned))
}

impl AuditLog {
    /// Open the chain in `settings.dir`, continuing after its last record.
    pub fn open(settings: &AuditSettings, metrics: Arc<Metrics>) -> Result<AuditLog> {
        std::fs::create_dir_all(&settings.dir).with_context(|| format!("cannot create {}", settings.dir.display()))?;
        let files = chain_files(&settings.dir)?;
        let (sequence, prev) = match files.last() {
            Some(last) => {
                let prev = last_line(last)?.map_or_else(|| GENESIS.to_owned(), |l| line_hash(&l));
                (sequence_of(last).unwrap_or(1), prev)
            }
            None => (1, GENESIS.to_owned()),
        };
        let path = settings.dir.join(file_name(sequence));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(AuditLog {
            dir: settings.dir.clone(),
            key: AuditKey::new(settings.hmac_key.expose().as_bytes()),
            fsync: settings.fsync,
            max_file_bytes: settings.max_file_bytes,
            writer: Mutex::new(Writer { file, sequence, written, prev, last_sync: Instant::now() }),
            metrics,
        })
    }

    /// Append the record of one lookup. `Err` means it is not on record: the lookup must fail.
    pub fn record(&self, lookup: &Lookup<'_>) -> Result<()> {
        let result = self.append(lookup);
        self.metrics.server.audit_record(result.is_ok());
        if let Err(e) = &result {
            tracing::error!(error = %e.chain(), route = lookup.route, "an audit record could not be written; the lookup is refused");
        }
        result
    }

    fn append(&self, lookup: &Lookup<'_>) -> Result<()> {
        let mut writer = self.writer.lock().map_err(|_| Error::new("the audit writer is poisoned"))?;
        if writer.written >= self.max_file_bytes {
            let sequence = writer.sequence + 1;
            let path = self.dir.join(file_name(sequence));
            writer.file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot start {}", path.display()))?;
            writer.sequence = sequence;
            writer.written = 0;
        }
        let record = Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            request_id: lookup.request_id.to_owned(),
            client_id: lookup.client_id.map(str::to_owned),
            consumer_orgno: lookup.consumer_orgno.map(str::to_owned),
            on_behalf_of: lookup.on_behalf_of.map(str::to_owned),
            route: lookup.route.to_owned(),
            scopes: lookup.scopes.to_vec(),
            persons: lookup.pids.len(),
            pids: lookup.pids.iter().map(|pid| self.key.pid(pid)).collect(),
            outcome: lookup.outcome.to_owned(),
            prev: writer.prev.clone(),
        };
        let body = serde_json::to_string(&record).context("the record cannot be serialised")?;
        let line = seal(&self.key, &body);
        let bytes = format!("{line}\n");
        // One write of the whole line: a failure leaves at most a torn last line, which
        // verification reports and the next start does not chain onto.
        writer.file.write_all(bytes.as_bytes()).context("cannot append the audit record")?;
        match self.fsync {
            Fsync::Always => writer.file.sync_data().context("cannot sync the audit file")?,
            Fsync::Interval(every) if writer.last_sync.elapsed() >= every => {
                writer.file.sync_data().context("cannot sync the audit file")?;
                writer.last_sync = Instant::now();
            }
            Fsync::Interval(_) | Fsync::Never => {}
        }
        writer.written += bytes.len() as u64;
        writer.prev = line_hash(&line);
        Ok(())
    }

    pub fn key(&self) -> &AuditKey {
        &self.key
    }
}

/// The record's body with its MAC as the last member.
fn seal(key: &AuditKey, body: &str) -> String {
    let open = body.strip_suffix('}').unwrap_or(body);
    format!("{open},\"mac\":\"{}\"}}", key.record(body))
}

/// Split a line into its body and MAC, and check the MAC.
fn unseal(key: &AuditKey, line: &str) -> std::result::Result<Record, String> {
    let (open, mac) = line
        .strip_suffix("\"}")
        .and_then(|l| l.rsplit_once(",\"mac\":\""))
        .ok_or("the record has no mac at its end")?;
    let body = format!("{open}}}");
    if key.record(&body) != mac {
        return Err("its mac does not match its content (changed, or another key)".into());
    }
    serde_json::from_str(&body).map_err(|e| format!("not a record: {e}"))
}

/// Where a chain breaks.
#[derive(Debug, PartialEq, Eq)]
pub struct Break {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// Check the chain through `files` in order: every MAC, and every `prev`. `Ok(n)`: n records.
pub fn verify(key: &AuditKey, files: &[PathBuf]) -> std::result::Result<usize, Break> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for file in files {
        let broken = |line: usize, reason: String| Break { file: file.clone(), line, reason };
        let reader = BufReader::new(File::open(file).map_err(|e| broken(0, format!("cannot open: {e}")))?);
        for (index, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| broken(index + 1, format!("cannot read: {e}")))?;
            let record = unseal(key, &line).map_err(|reason| broken(index + 1, reason))?;
            if record.prev != prev {
                return Err(broken(
                    index + 1,
                    "its prev is not the hash of the record before (removed or reordered)".into(),
                ));
            }
            prev = line_hash(&line);
            count += 1;
        }
    }
    Ok(count)
}

/// The records of one person's lookups, at or after `since` (RFC 3339 prefix order).
pub fn search(key: &AuditKey, files: &[PathBuf], pid: &str, since: Option<&str>) -> Result<Vec<Record>> {
    let wanted = key.pid(pid);
    let mut found = Vec::new();
    for file in files {
        let reader = BufReader::new(File::open(file).with_context(|| format!("cannot open {}", file.display()))?);
        for line in reader.lines() {
            let line = line.with_context(|| format!("cannot read {}", file.display()))?;
            let Ok(record) = unseal(key, &line) else { continue };
            if record.pids.contains(&wanted) && since.is_none_or(|s| record.time.as_str() >= s) {
                found.push(record);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path, max_file_bytes: u64) -> AuditLog {
        let settings = AuditSettings {
            dir: dir.to_path_buf(),
            hmac_key: crate::config::Secret::inline("audit-test-key"),
            fsync: Fsync::Always,
            max_file_bytes,
        };
        AuditLog::open(&settings, Arc::new(Metrics::new())).unwrap()
    }

    fn lookup<'a>(pids: &'a [String], scopes: &'a [String]) -> Lookup<'a> {
        Lookup {
            request_id: "r1",
            client_id: Some("demo"),
            consumer_orgno: Some("991825827"),
            on_behalf_of: None,
            route: "krr-personer",
            scopes,
            pids,
            outcome: "ok",
        }
    }

    #[test]
    fn a_chain_across_files_and_restarts_verifies_and_one_changed_byte_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = vec!["23079421936".to_owned(), "08023549930".to_owned()];
        let scopes = vec!["krr:global/kontaktinformasjon.read".to_owned()];
        for _ in 0..2 {
            let audit = log(dir.path(), 600);
            for _ in 0..5 {
                audit.record(&lookup(&pids, &scopes)).unwrap();
            }
        }
        let files = chain_files(dir.path()).unwrap();
        assert!(files.len() > 2, "rotated: {files:?}");
        let key = AuditKey::new(b"audit-test-key");
        assert_eq!(verify(&key, &files), Ok(10));
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(!text.contains("23079421936"), "no personidentifikator in the file");
        let found = search(&key, &files, "23079421936", None).unwrap();
        assert_eq!(found.len(), 10);
        assert!(search(&key, &files, "26074502015", None).unwrap().is_empty());

        // One byte changed in the middle of the second file: that record is named.
        let mut bytes = std::fs::read(&files[1]).unwrap();
        let at = bytes.iter().position(|b| *b == b'o').unwrap();
        bytes[at] = b'O';
        std::fs::write(&files[1], &bytes).unwrap();
        let broken = verify(&key, &files).unwrap_err();
        assert_eq!((broken.file.clone(), broken.line), (files[1].clone(), 1), "{broken:?}");
        // A record removed: the next one's prev no longer matches.
        std::fs::write(&files[1], text.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        assert!(verify(&key, &files[..1]).is_ok());
        let dropped: Vec<PathBuf> = vec![files[0].clone()];
        std::fs::write(&files[0], text.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        assert!(verify(&key, &dropped).unwrap_err().reason.contains("prev"));
    }
}
