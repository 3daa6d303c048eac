//! `DiskQueueConfig`: what a user writes under `queue:` in the agent config.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::exporter::RecordCompression;

use super::format::{MAX_BODY_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The agent's durable disk queue between the batcher and the exporter.
///
/// ```yaml
/// queue:
///   dir: /var/lib/argus-agent/queue   # one directory per queue, exclusively locked
///   max_bytes: 256MiB           # all segment files together
///   segment_bytes: 8MiB         # a segment is deleted once all its records are acked
///   max_record_bytes: 4MiB      # larger appends are refused (permanent error)
///   fsync: 1s                   # always | never | <interval>
///   when_full: block            # block | drop_oldest
///   compression: zstd           # zstd | none: how batches are stored
/// ```
///
/// Sizes are bytes, as an integer or with a unit (`KiB`, `MiB`, `GiB`, and
/// `KB`, `MB`, `GB` as powers of 1000).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskQueueConfig {
    /// Directory holding the segment and ack files. Created if missing; a
    /// second agent opening the same directory is refused (advisory lock).
    pub dir: PathBuf,
    /// Upper bound of all segment files together. Reaching it applies
    /// `when_full`. Must be at least twice `segment_bytes`, so a full queue
    /// always has a whole segment other than the one being written.
    #[serde(with = "byte_size")]
    pub max_bytes: u64,
    /// A segment is closed once the next record would take it past this
    /// size; disk space is given back one whole segment at a time.
    #[serde(with = "byte_size")]
    pub segment_bytes: u64,
    /// Largest record (one batch) accepted. It must fit in one segment with
    /// its framing (`segment_bytes` − 64 bytes at most).
    #[serde(with = "byte_size")]
    pub max_record_bytes: u64,
    /// When appended data is forced to disk (`fsync`). `kill -9` never loses
    /// an appended record under any policy (it is in the kernel's page cache
    /// once `append` returns); this only decides what a power loss can take.
    pub fsync: FsyncPolicy,
    /// What `append` does when `max_bytes` is reached.
    pub when_full: WhenFull,
    /// How the batcher stores its batches: `zstd` (default) keeps OTLP logs
    /// at a tenth to a twentieth of their size, so `max_bytes` holds that
    /// much more of an outage, and ships them to a zstd-capable endpoint
    /// without compressing again; `none` stores the protobuf as it is.
    /// Either is read back whatever the setting (records say what they are).
    pub compression: RecordCompression,
}

impl Default for DiskQueueConfig {
    fn default() -> Self {
        DiskQueueConfig {
            dir: PathBuf::from("/var/lib/argus-agent/queue"),
            max_bytes: 256 * MIB,
            segment_bytes: 8 * MIB,
            max_record_bytes: 4 * MIB,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            when_full: WhenFull::Block,
            compression: RecordCompression::Zstd,
        }
    }
}

/// When appended data is forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before every `append` returns: no acknowledged record is
    /// lost even to a power cut, at the price of one disk flush per batch.
    Always,
    /// Leave flushing to the kernel (typically within 30 s). Survives
    /// `kill -9` and OOM kills, not a power loss.
    Never,
    /// Flush dirty segments and ack files every interval, from the queue's
    /// I/O thread: a power loss takes at most that interval's appends.
    Interval(Duration),
}

impl FsyncPolicy {
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => humantime_serde::re::humantime::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|e| format!("expected always, never or a duration like 1s ({e})")),
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(d) => {
                write!(f, "{}", humantime_serde::re::humantime::format_duration(*d))
            }
        }
    }
}

impl Serialize for FsyncPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FsyncPolicy::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What `append` does when the queue holds `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait until acks free a segment. The wait propagates to the sources:
    /// the file source stops reading (the log files are the buffer) and the
    /// OTLP receiver answers with a retryable status. Nothing is lost.
    Block,
    /// Delete the oldest segment, counting its undelivered records in
    /// `queue_dropped_records_total{reason="queue_full"}` and logging it.
    /// Keeps the freshest data flowing during a long outage.
    DropOldest,
}

impl DiskQueueConfig {
    /// Names every problem in the config, each prefixed with `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.dir.as_os_str().is_empty() {
            out.push(format!("{path}.dir: must not be empty"));
        }
        let min_segment = (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64 + 1;
        if self.segment_bytes < min_segment {
            out.push(format!(
                "{path}.segment_bytes: must be at least {min_segment} bytes (got {})",
                self.segment_bytes
            ));
        }
        if self.segment_bytes > GIB {
            out.push(format!(
                "{path}.segment_bytes: must be at most 1GiB (got {})",
                self.segment_bytes
            ));
        }
        if self.max_bytes < self.segment_bytes.saturating_mul(2) {
            out.push(format!(
                "{path}.max_bytes: must be at least twice segment_bytes ({} bytes), got {}",
                self.segment_bytes.saturating_mul(2),
                self.max_bytes
            ));
        }
        if self.max_record_bytes == 0 {
            out.push(format!("{path}.max_record_bytes: must be greater than 0"));
        }
        let room = self
            .segment_bytes
            .saturating_sub((SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64)
            .min(MAX_BODY_LEN as u64);
        if self.max_record_bytes > room {
            out.push(format!(
                "{path}.max_record_bytes: a record must fit in one segment: at most {room} bytes with segment_bytes {} (got {})",
                self.segment_bytes, self.max_record_bytes
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            out.push(format!(
                "{path}.fsync: interval must be greater than 0 (use always to flush every append)"
            ));
        }
        out
    }
}

/// Byte sizes as integers or strings with a unit.
pub(crate) mod byte_size {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    /// Accepts an integer or a string with a unit; anything else is named
    /// for what it is ("expected a byte size …"), not as an untagged-enum
    /// mismatch.
    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte size such as 268435456, 256MiB or 1GB")
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse(v).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Visitor)
    }

    pub fn parse(s: &str) -> Result<u64, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. 268435456, 256MiB or 1GB"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
        };
        n.checked_mul(mult)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = DiskQueueConfig::default();
        assert!(c.problems("queue").is_empty(), "{:?}", c.problems("queue"));
        assert_eq!(c.max_bytes, 256 * MIB);
        assert_eq!(c.segment_bytes, 8 * MIB);
        assert_eq!(c.fsync, FsyncPolicy::Interval(Duration::from_secs(1)));
        assert_eq!(c.when_full, WhenFull::Block);
        assert_eq!(c.compression, RecordCompression::Zstd);
    }

    #[test]
    fn yaml_with_units_and_policies_parses() {
        let c: DiskQueueConfig = serde_yaml::from_str(
            "dir: /q\nmax_bytes: 1GiB\nsegment_bytes: 16MiB\nmax_record_bytes: 2000000\nfsync: 250ms\nwhen_full: drop_oldest\ncompression: none\n",
        )
        .unwrap();
        assert_eq!(c.compression, RecordCompression::None);
        assert_eq!(c.max_bytes, GIB);
        assert_eq!(c.segment_bytes, 16 * MIB);
        assert_eq!(c.max_record_bytes, 2_000_000);
        assert_eq!(c.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(c.when_full, WhenFull::DropOldest);
        let c: DiskQueueConfig = serde_yaml::from_str("fsync: always").unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Always);
        let c: DiskQueueConfig = serde_yaml::from_str("fsync: never").unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Never);
        // Round trip through YAML keeps everything.
        let back: DiskQueueConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let e = serde_yaml::from_str::<DiskQueueConfig>("max_byte: 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `max_byte`"), "{e}");
        let e = serde_yaml::from_str::<DiskQueueConfig>("fsync: sometimes").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected always, never or a duration"),
            "{e}"
        );
        let e = serde_yaml::from_str::<DiskQueueConfig>("max_bytes: 12 parsecs").unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }

    #[test]
    fn problems_name_every_bad_field() {
        let c = DiskQueueConfig {
            dir: PathBuf::new(),
            max_bytes: 10 * MIB,
            segment_bytes: 8 * MIB,
            max_record_bytes: 9 * MIB,
            fsync: FsyncPolicy::Interval(Duration::ZERO),
            when_full: WhenFull::Block,
            compression: RecordCompression::None,
        };
        let p = c.problems("agent.queue");
        assert!(
            p.iter().any(|m| m.starts_with("agent.queue.dir: ")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("agent.queue.max_bytes: must be at least twice")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("agent.queue.max_record_bytes: a record must fit")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with("agent.queue.fsync: ")),
            "{p:?}"
        );
        assert_eq!(p.len(), 4, "{p:?}");
        let tiny = DiskQueueConfig {
            segment_bytes: 10,
            max_record_bytes: 0,
            ..DiskQueueConfig::default()
        };
        let p = tiny.problems("q");
        assert!(
            p.iter()
                .any(|m| m.starts_with("q.segment_bytes: must be at least")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("q.max_record_bytes: must be greater than 0")),
            "{p:?}"
        );
    }

    #[test]
    fn size_parser_rejects_overflow_and_garbage() {
        assert_eq!(byte_size::parse("0").unwrap(), 0);
        assert_eq!(byte_size::parse("3 KB").unwrap(), 3000);
        assert!(byte_size::parse("99999999999999999999GiB").is_err());
        assert!(byte_size::parse("MiB").is_err());
    }
}
