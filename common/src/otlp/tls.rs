//! Server-side TLS from PEM files: rustls with the `ring` provider.
//!
//! With `client_ca_file` the handshake *requires* a client certificate that
//! chains to that CA (mTLS); a client without one never reaches the HTTP
//! layer. Files are read once, at build; a bad file is a config problem
//! naming the field, not a runtime surprise.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::config::{TlsServerConfig, TlsVersion};

/// Builds the rustls config, or names every problem (`{path}.cert_file: …`).
pub(crate) fn server_config(
    cfg: &TlsServerConfig,
    path: &str,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, Vec<String>> {
    let mut problems = Vec::new();
    let certs = read_certs(&cfg.cert_file)
        .map_err(|e| problems.push(format!("{path}.cert_file: {e}")))
        .ok();
    let key = read_key(&cfg.key_file)
        .map_err(|e| problems.push(format!("{path}.key_file: {e}")))
        .ok();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match &cfg.client_ca_file {
        None => None,
        Some(ca) => match read_certs(ca).and_then(|cas| {
            let mut roots = RootCertStore::empty();
            for c in cas {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: invalid CA certificate: {e}", ca.display()))?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))
        }) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("{path}.client_ca_file: {e}"));
                None
            }
        },
    };
    let (Some(certs), Some(key)) = (certs, key) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| vec![format!("{path}.min_version: {e}")])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| vec![format!("{path}.key_file: does not match cert_file: {e}")])?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PRIVATE KEY block found", path.display()))
}
