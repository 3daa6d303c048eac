//! Model state on disk: so a restart does not forget what every series
//! learnt.
//!
//! # Format (version 1)
//!
//! ```text
//! "ARGUSDET"  u32 LE version
//! record*     u8 kind | u32 LE length | u32 LE CRC-32 (kind byte + payload) | payload
//! ```
//!
//! Payloads are [bincode] 2 (standard config: varint integers, floats as
//! their raw little-endian bits, so every `f32`/`f64` of a model comes back
//! bit-exact and a restored detector continues with exactly the verdicts an
//! uninterrupted one would give). Records, in order:
//!
//! | kind | payload |
//! |---|---|
//! | 1 `meta` | [`Meta`]: when, the clock, the step, the engine fingerprint, the next incident number |
//! | 2 `series` | one series: key (signal, name, labels), its `SeriesDetector`, recent points, incident link |
//! | 3 `open` / 4 `resolved` | one [`Incident`] |
//! | 5 `window` | one API-made maintenance [`Window`] |
//! | 255 `end` | counts of everything above |
//!
//! A reader accepts a file only whole: header, every CRC, and an `end`
//! record whose counts match. Anything else — a torn write that escaped
//! the rename, bit rot, a future version — is reported (log line and
//! `snapshot_restore_failures_total`) and the detector starts fresh: a
//! snapshot is a cache of learnt state, never a reason not to start.
//!
//! # Writing
//!
//! To `detector.snapshot.tmp` in the snapshot directory, then `fsync`,
//! `rename` over `detector.snapshot`, `fsync` of the directory: the file
//! under the real name is always a complete snapshot, the previous one
//! until the new one is durable, so `kill -9` at any moment leaves the last
//! periodic snapshot intact. The service encodes series in chunks under its
//! lock and writes outside it, so ingest waits at most one chunk.
//!
//! # Engine changes
//!
//! [`Meta::engine`] fingerprints the engine settings. When they changed
//! since the snapshot, model states are discarded with a warning (their
//! shapes may depend on the settings); incidents and windows are kept.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use argus_common::otlp::Signal;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::engine::{EngineConfig, SeriesDetector};
use crate::incident::Incident;
use crate::maintenance::Window;
use crate::registry::SeriesRef;
use crate::scoring::{RecentPoint, SeriesState};

pub const MAGIC: &[u8; 8] = b"ARGUSDET";
pub const VERSION: u32 = 1;
pub const FILE_NAME: &str = "detector.snapshot";
const TMP_NAME: &str = "detector.snapshot.tmp";

const KIND_META: u8 = 1;
const KIND_SERIES: u8 = 2;
const KIND_OPEN: u8 = 3;
const KIND_RESOLVED: u8 = 4;
const KIND_WINDOW: u8 = 5;
const KIND_END: u8 = 255;

/// Largest record accepted when reading (a detector state is a few KiB).
const MAX_RECORD: u32 = 64 << 20;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Retryable at the next interval (disk full, permissions).
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Permanent for this file: it is skipped.
    #[error("snapshot {path} is unusable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What the snapshot was taken with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Wall clock, unix seconds.
    pub taken_at: i64,
    /// The scoring clock (data time), unix seconds.
    pub clock: i64,
    pub step_secs: u64,
    /// [`engine_fingerprint`] of the settings the states were learnt with.
    pub engine: u64,
    pub next_incident: u64,
    pub version: String,
}

/// One series, as written (borrowed) …
#[derive(Serialize)]
pub struct SeriesOut<'a> {
    pub signal: Signal,
    pub name: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub detector: &'a SeriesDetector,
    pub recent: Vec<RecentPoint>,
    pub incident: Option<u64>,
}

impl<'a> SeriesOut<'a> {
    /// A live series as written, or `None` while it has no detector yet
    /// (nothing learnt that a restart would miss).
    pub fn live(series: &SeriesRef<'a, SeriesState>) -> Option<Self> {
        let s = series.state;
        Some(SeriesOut {
            signal: series.key.signal(),
            name: series.key.name(),
            labels: series.key.label_vec(),
            detector: s.detector.as_deref()?,
            recent: s.recent.iter().copied().collect(),
            incident: s.incident,
        })
    }
}

/// … and as read back.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SeriesIn {
    pub signal: Signal,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub detector: SeriesDetector,
    pub recent: Vec<RecentPoint>,
    pub incident: Option<u64>,
}

impl SeriesIn {
    /// `name{label="value",…}`: how the service finds the series again.
    pub fn display_key(&self) -> String {
        display_key(
            &self.name,
            self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// The same text as `SeriesKey`'s `Display`.
pub fn display_key<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::from(name);
    let mut first = true;
    for (k, v) in labels {
        s.push(if first { '{' } else { ',' });
        first = false;
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    if !first {
        s.push('}');
    }
    s
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct End {
    series: u64,
    open: u64,
    resolved: u64,
    windows: u64,
}

/// A whole snapshot, read.
#[derive(Debug)]
pub struct Snapshot {
    pub meta: Meta,
    pub series: Vec<SeriesIn>,
    pub open: Vec<Incident>,
    pub resolved: Vec<Incident>,
    pub windows: Vec<Window>,
    /// File size.
    pub bytes: u64,
}

/// FNV-1a of the engine settings' JSON.
pub fn engine_fingerprint(cfg: &EngineConfig) -> u64 {
    let text = serde_json::to_string(cfg).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends one framed record to `buf`.
fn encode_record<T: Serialize>(kind: u8, value: &T, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.push(kind);
    buf.extend_from_slice(&[0; 8]);
    // Encoding into a Vec fails only for types bincode cannot represent,
    // which ours are not.
    bincode::serde::encode_into_std_write(value, buf, config())
        .expect("snapshot records serialise");
    let len = (buf.len() - start - 9) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(&buf[start + 9..]);
    let crc = crc.finalize();
    buf[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
    buf[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes records into a buffer (under the service's lock).
#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
    end: End,
}

impl Encoder {
    pub fn meta(&mut self, m: &Meta) {
        encode_record(KIND_META, m, &mut self.buf);
    }

    pub fn series(&mut self, s: &SeriesOut<'_>) {
        encode_record(KIND_SERIES, s, &mut self.buf);
        self.end.series += 1;
    }

    pub fn incident(&mut self, inc: &Incident) {
        let kind = if inc.is_open() {
            KIND_OPEN
        } else {
            KIND_RESOLVED
        };
        encode_record(kind, inc, &mut self.buf);
        if inc.is_open() {
            self.end.open += 1;
        } else {
            self.end.resolved += 1;
        }
    }

    pub fn window(&mut self, w: &Window) {
        encode_record(KIND_WINDOW, w, &mut self.buf);
        self.end.windows += 1;
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A snapshot being written (see the module docs).
pub struct Writer {
    dir: PathBuf,
    file: BufWriter<File>,
    end: End,
    bytes: u64,
}

impl Writer {
    pub fn create(dir: &Path) -> Result<Writer, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(TMP_NAME);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|source| SnapshotError::Io {
                path: tmp.clone(),
                source,
            })?;
        let mut w = Writer {
            dir: dir.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            end: End::default(),
            bytes: 0,
        };
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&VERSION.to_le_bytes());
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), SnapshotError> {
        self.file.write_all(b).map_err(|source| SnapshotError::Io {
            path: self.dir.join(TMP_NAME),
            source,
        })?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Writes what an [`Encoder`] holds and empties it.
    pub fn take(&mut self, enc: &mut Encoder) -> Result<(), SnapshotError> {
        let buf = std::mem::take(&mut enc.buf);
        self.write(&buf)?;
        self.end.series += enc.end.series;
        self.end.open += enc.end.open;
        self.end.resolved += enc.end.resolved;
        self.end.windows += enc.end.windows;
        enc.end = End::default();
        Ok(())
    }

    /// Ends, syncs and renames into place; returns the file size.
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        let mut buf = Vec::new();
        encode_record(KIND_END, &self.end, &mut buf);
        self.write(&buf)?;
        let tmp = self.dir.join(TMP_NAME);
        let path = self.dir.join(FILE_NAME);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| SnapshotError::Io { path: p, source }
        };
        let file = self.file.into_inner().map_err(|e| SnapshotError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(self.bytes)
    }
}

/// Reads and checks a whole snapshot. `Ok(None)` when there is none.
pub fn read(dir: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let path = dir.join(FILE_NAME);
    let mut data = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f
            .read_to_end(&mut data)
            .map_err(|source| SnapshotError::Io {
                path: path.clone(),
                source,
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SnapshotError::Io { path, source }),
    };
    decode(&data)
        .map(Some)
        .map_err(|reason| SnapshotError::Corrupt { path, reason })
}

fn body<T: DeserializeOwned>(kind: u8, payload: &[u8]) -> Result<T, String> {
    let (v, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| format!("record kind {kind}: {e}"))?;
    if used != payload.len() {
        return Err(format!(
            "record kind {kind}: {} trailing bytes",
            payload.len() - used
        ));
    }
    Ok(v)
}

/// Decodes a snapshot held in memory.
pub fn decode(data: &[u8]) -> Result<Snapshot, String> {
    if data.len() < 12 || &data[..8] != MAGIC {
        return Err("not an Argus detector snapshot (bad magic)".into());
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "version {version}, this build reads version {VERSION}"
        ));
    }
    let mut pos = 12;
    let mut meta = None;
    let mut snap = Snapshot {
        meta: Meta {
            taken_at: 0,
            clock: 0,
            step_secs: 0,
            engine: 0,
            next_incident: 0,
            version: String::new(),
        },
        series: Vec::new(),
        open: Vec::new(),
        resolved: Vec::new(),
        windows: Vec::new(),
        bytes: data.len() as u64,
    };
    loop {
        if data.len() - pos < 9 {
            return Err(format!("truncated at byte {pos} (no end record)"));
        }
        let kind = data[pos];
        let len = u32::from_le_bytes(data[pos + 1..pos + 5].try_into().expect("4"));
        let crc = u32::from_le_bytes(data[pos + 5..pos + 9].try_into().expect("4"));
        if len > MAX_RECORD || (data.len() - pos - 9) < len as usize {
            return Err(format!("record at byte {pos}: length {len} past the end"));
        }
        let payload = &data[pos + 9..pos + 9 + len as usize];
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(payload);
        if h.finalize() != crc {
            return Err(format!("record at byte {pos}: checksum mismatch"));
        }
        pos += 9 + len as usize;
        match kind {
            KIND_META => meta = Some(body::<Meta>(kind, payload)?),
            KIND_SERIES => snap.series.push(body(kind, payload)?),
            KIND_OPEN => snap.open.push(body(kind, payload)?),
            KIND_RESOLVED => snap.resolved.push(body(kind, payload)?),
            KIND_WINDOW => snap.windows.push(body(kind, payload)?),
            KIND_END => {
                let end: End = body(kind, payload)?;
                let got = End {
                    series: snap.series.len() as u64,
                    open: snap.open.len() as u64,
                    resolved: snap.resolved.len() as u64,
                    windows: snap.windows.len() as u64,
                };
                if end != got {
                    return Err(format!("end record says {end:?}, file holds {got:?}"));
                }
                if pos != data.len() {
                    return Err(format!("{} bytes after the end record", data.len() - pos));
                }
                break;
            }
            k => {
                return Err(format!(
                    "record at byte {}: unknown kind {k}",
                    pos - 9 - len as usize
                ));
            }
        }
    }
    snap.meta = meta.ok_or("no meta record")?;
    Ok(snap)
}

#[cfg(test)]
mod tests;
