//! Standard Webhooks signatures (symmetric, `v1`).
//!
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`
//! where `key` is the base64-decoded part of a `whsec_…` secret. With several
//! secrets (rotation) every one signs and the signatures are space-separated;
//! a receiver accepts the request when any one verifies. The id is
//! `msg_` + a UUIDv7 (time-ordered, no `.`), unique per action and reused by
//! every retry of it; the timestamp is the attempt's, so a retry after a
//! long backoff is still inside the receiver's tolerance window.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bounds of a decoded secret, per the specification.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

/// One signing key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(<{} bytes redacted>)", self.0.len())
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>`. The error never quotes the secret.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or("a secret must start with whsec_ (Standard Webhooks format)")?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "the part after whsec_ is not valid base64".to_owned())?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(format!(
                "the secret decodes to {} bytes; Standard Webhooks requires {MIN_KEY_BYTES} to {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = self.mac(id, timestamp, body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The receiving side: whether any `v1` entry of a `webhook-signature`
    /// header is this key's signature of the message, compared in constant
    /// time. Timestamp tolerance and replay are the receiver's to check.
    pub fn verifies(&self, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
        header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|sig| STANDARD.decode(sig).ok())
            .any(|sig| self.mac(id, timestamp, body).verify_slice(&sig).is_ok())
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Whitespace-separated `whsec_` secrets, in order (the first is current).
pub fn parse_secrets(text: &str) -> Result<Vec<SigningKey>, String> {
    let keys = text
        .split_whitespace()
        .enumerate()
        .map(|(i, s)| SigningKey::parse(s).map_err(|e| format!("secret #{}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err("no secret in it".into());
    }
    Ok(keys)
}

/// The `webhook-signature` header value: every key's signature.
pub fn signature_header(keys: &[SigningKey], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new webhook id.
pub fn new_webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_the_standard_webhooks_test_vector() {
        // Published with the reference implementations: a consumer's stock
        // Standard Webhooks / Svix library must accept what we send.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verifies_its_own_signatures_only() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let other = SigningKey::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let header = signature_header(&[other.clone(), key.clone()], "msg_x", 7, b"{}");
        assert!(
            key.verifies("msg_x", 7, b"{}", &header),
            "any entry may match"
        );
        assert!(!key.verifies("msg_x", 7, b"{ }", &header), "body changed");
        assert!(!key.verifies("msg_y", 7, b"{}", &header), "id changed");
        assert!(
            !key.verifies("msg_x", 8, b"{}", &header),
            "timestamp changed"
        );
        assert!(!key.verifies("msg_x", 7, b"{}", "v1,!!notbase64 v2,abc"));
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let keys = parse_secrets(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        )
        .unwrap();
        let h = signature_header(&keys, "msg_x", 1, b"{}");
        let sigs: Vec<&str> = h.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_ne!(sigs[0], sigs[1]);
        assert!(sigs.iter().all(|s| s.starts_with("v1,")));
    }

    #[test]
    fn bad_secrets_are_refused_without_being_quoted() {
        for (s, why) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
            ("whsec_!!!notbase64!!!", "not valid base64"),
            ("whsec_c2hvcnQ=", "decodes to 5 bytes"),
        ] {
            let e = SigningKey::parse(s).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains(s), "the secret is never echoed: {e}");
        }
        assert!(parse_secrets("  \n").is_err());
        let k = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{k:?}"), "SigningKey(<24 bytes redacted>)");
    }

    #[test]
    fn ids_are_unique_and_dot_free() {
        let a = new_webhook_id();
        let b = new_webhook_id();
        assert_ne!(a, b);
        assert!(a.starts_with("msg_") && !a.contains('.'));
    }
}
