//! HTTP request body decompression with a hard output cap.
//!
//! A compressed body is at most `max_request_body_size` on the wire, but
//! gzip inflates up to ~1000:1 and zstd further, so the wire limit alone
//! does not bound memory. Decoders here stream into a buffer that stops at
//! `limit + 1` bytes: a bomb costs `limit` bytes of memory and the CPU to
//! inflate that much, then is refused as too large — never inflated fully.
//!
//! Codings, as the Collector's `confighttp` accepts them: `gzip` (also
//! `x-gzip`; multi-member streams are read to the end, as Go's reader does),
//! `deflate` (zlib-wrapped, per RFC 9110), `zstd` (with the window capped at
//! 8 MiB, so a crafted frame header cannot demand a 2 GiB window buffer),
//! and `identity`.

use std::borrow::Cow;
use std::io::Read;

/// `Content-Encoding` values the HTTP receiver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

/// zstd window limit: 2^23 = 8 MiB (what zstd's own CLI decompresses by
/// default without `--long`).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

impl ContentCoding {
    /// Parses a `Content-Encoding` header; `None` means unsupported.
    pub fn from_header(value: Option<&str>) -> Option<ContentCoding> {
        let v = value.map(str::trim).unwrap_or("");
        Some(match v.to_ascii_lowercase().as_str() {
            "" | "identity" => ContentCoding::Identity,
            "gzip" | "x-gzip" => ContentCoding::Gzip,
            "deflate" => ContentCoding::Deflate,
            "zstd" => ContentCoding::Zstd,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContentCoding::Identity => "identity",
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Zstd => "zstd",
        }
    }
}

/// Why a body could not be decompressed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid {coding} data: {reason}")]
    Corrupt {
        coding: &'static str,
        reason: String,
    },
}

/// Decompresses `body`, refusing to produce more than `limit` bytes.
pub fn decompress(
    coding: ContentCoding,
    body: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, DecompressError> {
    if coding == ContentCoding::Identity {
        return if body.len() > limit {
            Err(DecompressError::TooLarge { limit })
        } else {
            Ok(Cow::Borrowed(body))
        };
    }
    let corrupt = |e: std::io::Error| DecompressError::Corrupt {
        coding: coding.as_str(),
        reason: e.to_string(),
    };
    let reader: Box<dyn Read + '_> = match coding {
        ContentCoding::Identity => unreachable!("handled above"),
        ContentCoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        ContentCoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(body)),
        ContentCoding::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(corrupt)?;
            Box::new(d)
        }
    };
    // Guess 4× for the first allocation, never above the cap.
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit.saturating_add(1)));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_coding_roundtrips() {
        let data = b"hello hello hello hello".repeat(10);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&data).unwrap();
        let zlib = z.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        for (coding, body) in [
            (ContentCoding::Identity, data.clone()),
            (ContentCoding::Gzip, gzip(&data)),
            (ContentCoding::Deflate, zlib),
            (ContentCoding::Zstd, zst),
        ] {
            assert_eq!(
                decompress(coding, &body, 1 << 20).unwrap(),
                &data[..],
                "{coding:?}"
            );
        }
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let mut body = gzip(b"first ");
        body.extend(gzip(b"second"));
        assert_eq!(
            decompress(ContentCoding::Gzip, &body, 100).unwrap(),
            &b"first second"[..]
        );
    }

    #[test]
    fn output_is_capped_exactly_at_the_limit() {
        let data = vec![0u8; 1000];
        let z = gzip(&data);
        assert_eq!(
            decompress(ContentCoding::Gzip, &z, 1000).unwrap().len(),
            1000
        );
        assert_eq!(
            decompress(ContentCoding::Gzip, &z, 999),
            Err(DecompressError::TooLarge { limit: 999 })
        );
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        assert_eq!(
            decompress(ContentCoding::Zstd, &zst, 10),
            Err(DecompressError::TooLarge { limit: 10 })
        );
        assert_eq!(
            decompress(ContentCoding::Identity, &data, 10),
            Err(DecompressError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for coding in [
            ContentCoding::Gzip,
            ContentCoding::Deflate,
            ContentCoding::Zstd,
        ] {
            assert!(matches!(
                decompress(coding, b"definitely not compressed", 100),
                Err(DecompressError::Corrupt { .. })
            ));
        }
        // Truncated stream.
        let z = gzip(&[7u8; 100]);
        assert!(decompress(ContentCoding::Gzip, &z[..z.len() - 5], 1000).is_err());
    }

    #[test]
    fn header_values() {
        assert_eq!(
            ContentCoding::from_header(None),
            Some(ContentCoding::Identity)
        );
        assert_eq!(
            ContentCoding::from_header(Some(" GZIP ")),
            Some(ContentCoding::Gzip)
        );
        assert_eq!(
            ContentCoding::from_header(Some("x-gzip")),
            Some(ContentCoding::Gzip)
        );
        assert_eq!(ContentCoding::from_header(Some("br")), None);
        assert_eq!(ContentCoding::from_header(Some("gzip, zstd")), None);
    }
}
