//! The audit trail of personal-data lookups: one JSON Lines record per lookup (KRR's
//! `personer` and `person`, authlevel, the simulator's `HentPersoner`, `HentEndringer` and
//! `HentPrintSertifikat`), appended before the answer goes out. A lookup whose record cannot be written fails (fail closed).
//!
//! - A personidentifikator appears only as HMAC-SHA-256 under the audit key, never as the
//!   number: a data-protection officer finds one person's lookups by computing it
//!   (`portvakt audit search`).
//! - Each record carries the SHA-256 of the line before it (`prev`) and its own HMAC (`mac`) over
//!   everything else, so a changed, removed or reordered record breaks the chain where it
//!   happened (`portvakt audit verify`). The chain runs on across files: a file is closed at
//!   `max_file_bytes` and the next one continues from its last line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lc_rs::{digest, hmac};
use chrono::{DateTime, Utc};
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
    writer: Mutex<State>,
    metrics: Arc<Metrics>,
}

/// The writer is opened at the first record.
enum State {
    Pending { sequence: u64, prev: String, cut: Option<(PathBuf, u64)> },
    Open(Writer),
}

/// `audit-00000001.jsonl`, …: the sequence orders the files of one chain.
fn file_name(sequence: u64) -> String {
    format!("audit-{sequence:08}.jsonl")
}

fn sequence_of(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("audit-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// The files of a chain in `dir`, in order (none when the folder does not exist yet).
pub fn chain_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries.with_context(|| format!("cannot read {}", dir.display()))?,
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter_map(|path| sequence_of(&path).map(|s| (s, path)))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// The complete lines of a file: split on `\n` only, each kept byte for byte. Bytes after the
/// last `\n` are a torn line (a write that failed or a crash), returned apart.
fn complete_lines(bytes: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = if end == 0 { Vec::new() } else { bytes[..end - 1].split(|b| *b == b'\n').collect() };
    (lines, &bytes[end..])
}

/// Where a chain goes on: the hash of its last record in `files` (newest last), and the length
/// the newest file is to be cut back to when it ends in a torn line (its lookup was refused,
/// so it was never a record). Nothing is changed here: `check-config` reads it too.
fn chain_head(key: &AuditKey, files: &[PathBuf]) -> Result<(String, Option<(PathBuf, u64)>)> {
    let mut cut = None;
    for (index, path) in files.iter().enumerate().rev() {
        // As long as the file system says it is (a device such as /dev/full never ends).
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|f| {
                let length = f.metadata()?.len();
                f.take(length).read_to_end(&mut bytes)
            })
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (lines, torn) = complete_lines(&bytes);
        if !torn.is_empty() {
            if index + 1 != files.len() {
                return Err(Error::new(format!("{} ends in a torn line but is not the newest file", path.display())));
            }
            cut = Some((path.clone(), (bytes.len() - torn.len()) as u64));
        }
        if let Some(last) = lines.last() {
            let line = std::str::from_utf8(last).map_err(|_| Error::new(format!("{}: not UTF-8", path.display())))?;
            unseal(key, line)
                .map_err(|reason| Error::new(format!("{}: the last record is not valid: {reason}", path.display())))?;
            return Ok((line_hash(line), cut));
        }
    }
    Ok((GENESIS.to_owned(), cut))
}

impl AuditLog {
    /// Find where the chain in `settings.dir` goes on. Nothing is written until the first
    /// record (`check-config` opens the log too).
    pub fn open(settings: &AuditSettings, metrics: Arc<Metrics>) -> Result<AuditLog> {
        let key = AuditKey::new(settings.hmac_key.expose().as_bytes());
        let files = chain_files(&settings.dir)?;
        // A chain that does not end in a valid record is not continued: an operator looks first.
        let (prev, cut) = chain_head(&key, &files)?;
        let sequence = files.last().and_then(|f| sequence_of(f)).unwrap_or(1);
        Ok(AuditLog {
            dir: settings.dir.clone(),
            key,
            fsync: settings.fsync,
            max_file_bytes: settings.max_file_bytes,
            writer: Mutex::new(State::Pending { sequence, prev, cut }),
            metrics,
        })
    }

    /// The writer, opened at the first record: the folder made, a torn line cut off.
    fn start(&self, sequence: u64, prev: String, cut: Option<(PathBuf, u64)>) -> Result<Writer> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        if let Some((path, good)) = cut {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(good))
                .with_context(|| format!("cannot cut the torn last line off {}", path.display()))?;
            tracing::warn!(file = %path.display(), "a torn audit line (a failed write) was cut off");
        }
        let path = self.dir.join(file_name(sequence));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer { file, sequence, written, prev, last_sync: Instant::now() })
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
        let mut state = self.writer.lock().map_err(|_| Error::new("the audit writer is poisoned"))?;
        if let State::Pending { sequence, prev, cut } = &*state {
            *state = State::Open(self.start(*sequence, prev.clone(), cut.clone())?);
        }
        let State::Open(writer) = &mut *state else { return Err(Error::new("the audit writer did not open")) };
        if writer.written >= self.max_file_bytes {
            if self.fsync != Fsync::Never {
                writer.file.sync_all().context("cannot sync the audit file before rotating")?;
            }
            let sequence = writer.sequence + 1;
            let path = self.dir.join(file_name(sequence));
            writer.file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot start {}", path.display()))?;
            if self.fsync != Fsync::Never {
                // The new file's entry in the folder survives a crash too.
                File::open(&self.dir).and_then(|d| d.sync_all()).context("cannot sync the audit folder")?;
            }
            writer.sequence = sequence;
            writer.written = 0;
        }
        let record = Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            request_id: clean_request_id(lookup.request_id),
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
        // One write of the whole line. On any failure the file is cut back to where it was:
        // the lookup is refused, so its record must not stand half written.
        let written = writer.written;
        let outcome =
            writer.file.write_all(bytes.as_bytes()).context("cannot append the audit record").and_then(|()| match self
                .fsync
            {
                Fsync::Always => writer.file.sync_data().context("cannot sync the audit file"),
                Fsync::Interval(every) if writer.last_sync.elapsed() >= every => {
                    writer.last_sync = Instant::now();
                    writer.file.sync_data().context("cannot sync the audit file")
                }
                Fsync::Interval(_) | Fsync::Never => Ok(()),
            });
        if let Err(e) = outcome {
            if let Err(cut) = writer.file.set_len(written) {
                tracing::error!(error = %cut, "a failed audit write could not be cut back; the next start cuts it");
            }
            return Err(e);
        }
        writer.written += bytes.len() as u64;
        writer.prev = line_hash(&line);
        Ok(())
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
pub fn verify(key: &AuditKey, files: &[PathBuf]) -> std::result::Result<Verified, Break> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for file in files {
        let broken = |line: usize, reason: String| Break { file: file.clone(), line, reason };
        let bytes = std::fs::read(file).map_err(|e| broken(0, format!("cannot read: {e}")))?;
        let (lines, torn) = complete_lines(&bytes);
        if !torn.is_empty() {
            return Err(broken(lines.len() + 1, "a line without its newline (torn or appended to)".into()));
        }
        for (index, line) in lines.into_iter().enumerate() {
            let line = std::str::from_utf8(line).map_err(|_| broken(index + 1, "not UTF-8".into()))?;
            let record = unseal(key, line).map_err(|reason| broken(index + 1, reason))?;
            if record.prev != prev {
                return Err(broken(
                    index + 1,
                    "its prev is not the hash of the record before (removed or reordered)".into(),
                ));
            }
            prev = line_hash(line);
            count += 1;
        }
    }
    Ok(Verified { records: count, head: prev })
}

/// A chain that verified: how many records, and the hash of the last. Truncation at the end
/// cannot be seen from the files alone: compare the head with one kept elsewhere.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    pub head: String,
}

/// What a search found: the person's records, and how many lines could not be read as
/// records (a broken chain: run `audit verify`).
pub struct Found {
    pub records: Vec<Record>,
    pub unreadable: usize,
}

/// The records of one person's lookups, at or after `since`.
pub fn search(key: &AuditKey, files: &[PathBuf], pid: &str, since: Option<DateTime<Utc>>) -> Result<Found> {
    let wanted = key.pid(pid);
    let mut found = Found { records: Vec::new(), unreadable: 0 };
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let (lines, torn) = complete_lines(&bytes);
        found.unreadable += usize::from(!torn.is_empty());
        for line in lines {
            let Some(record) = std::str::from_utf8(line).ok().and_then(|l| unseal(key, l).ok()) else {
                found.unreadable += 1;
                continue;
            };
            let at = DateTime::parse_from_rfc3339(&record.time).map(|t| t.with_timezone(&Utc)).ok();
            if record.pids.contains(&wanted) && since.is_none_or(|s| at.is_some_and(|t| t >= s)) {
                found.records.push(record);
            }
        }
    }
    Ok(found)
}

/// `--since`: a date (midnight UTC) or an RFC 3339 time.
pub fn parse_since(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// A request id as given, when it is a plain token; otherwise `invalid` (it comes from a
/// client header at the issuer and the simulator).
fn clean_request_id(id: &str) -> String {
    let plain =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if plain { id.to_owned() } else { "invalid".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "audit-test-key-0123";

    fn log(dir: &Path, max_file_bytes: u64) -> AuditLog {
        let settings = AuditSettings {
            dir: dir.to_path_buf(),
            hmac_key: crate::config::Secret::inline(KEY),
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

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    /// Ten records over several files, written by two processes one after the other.
    fn chain(dir: &Path) -> Vec<PathBuf> {
        let pids = vec!["23079421936".to_owned(), "08023549930".to_owned()];
        let scopes = vec!["krr:global/kontaktinformasjon.read".to_owned()];
        for _ in 0..2 {
            let audit = log(dir, 600);
            for _ in 0..5 {
                audit.record(&lookup(&pids, &scopes)).unwrap();
            }
        }
        chain_files(dir).unwrap()
    }

    #[test]
    fn a_chain_across_files_and_restarts_verifies_and_search_finds_by_keyed_hash() {
        let dir = tempfile::tempdir().unwrap();
        let files = chain(dir.path());
        assert!(files.len() > 2, "rotated: {files:?}");
        let key = AuditKey::new(KEY.as_bytes());
        assert_eq!(verify(&key, &files).unwrap().records, 10);
        assert!(!std::fs::read_to_string(&files[0]).unwrap().contains("23079421936"), "no number in the file");
        assert_eq!(search(&key, &files, "23079421936", None).unwrap().records.len(), 10);
        assert!(search(&key, &files, "26074502015", None).unwrap().records.is_empty());
        let tomorrow = Utc::now() + chrono::Duration::days(1);
        assert!(search(&key, &files, "23079421936", Some(tomorrow)).unwrap().records.is_empty());
        let yesterday = parse_since(&(Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string()).unwrap();
        assert_eq!(search(&key, &files, "23079421936", Some(yesterday)).unwrap().records.len(), 10);
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn a_changed_byte_a_removed_record_a_carriage_return_and_a_lost_newline_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = chain(dir.path());
        let key = AuditKey::new(KEY.as_bytes());
        let original = lines(&files[1]);
        let reason = |files: &[PathBuf]| verify(&key, files).unwrap_err();

        let mut changed = original.clone();
        changed[0] = changed[0].replacen("krr", "KRR", 1);
        write_lines(&files[1], &changed);
        let broken = reason(&files);
        assert_eq!((broken.file.clone(), broken.line), (files[1].clone(), 1));
        assert!(broken.reason.contains("mac"), "{broken:?}");

        // A record removed in the middle: the next one's prev no longer matches.
        let mut removed = original.clone();
        removed.remove(0);
        write_lines(&files[1], &removed);
        assert!(reason(&files).reason.contains("prev"));

        write_lines(&files[1], &original.iter().map(|l| format!("{l}\r")).collect::<Vec<_>>());
        assert!(reason(&files).reason.contains("mac"), "a carriage return is a changed byte");

        std::fs::write(&files[1], original.join("\n")).unwrap();
        assert!(reason(&files).reason.contains("newline"), "the last line must end in a newline");

        write_lines(&files[1], &original);
        assert!(verify(&key, &files).is_ok());
    }

    #[test]
    fn a_torn_last_line_is_cut_off_at_the_next_start_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let files = chain(dir.path());
        let newest = files.last().unwrap();
        let mut file = OpenOptions::new().append(true).open(newest).unwrap();
        file.write_all(b"{\"time\":\"2026-").unwrap();
        drop(file);
        let key = AuditKey::new(KEY.as_bytes());
        assert!(verify(&key, &files).unwrap_err().reason.contains("newline"));
        let pids = vec!["23079421936".to_owned()];
        log(dir.path(), 600).record(&lookup(&pids, &[])).unwrap();
        assert_eq!(verify(&key, &chain_files(dir.path()).unwrap()).unwrap().records, 11);
    }

    #[test]
    fn request_ids_from_clients_are_kept_only_when_plain() {
        assert_eq!(clean_request_id("a4a90a4d4550baf7"), "a4a90a4d4550baf7");
        assert_eq!(clean_request_id("x\"y"), "invalid");
        assert_eq!(clean_request_id(&"a".repeat(200)), "invalid");
    }
}
