//! TLS and mTLS with certificates made at test time (rcgen): a private CA,
//! a server certificate for `localhost`, a client certificate from the same
//! CA, and one from a CA the server does not trust.

use std::net::SocketAddr;
use std::path::PathBuf;

use argus_common::otlp::{OtlpReceiverConfig, ReceiverError, TlsServerConfig};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::support::{local_config, logs, start};

struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_file: PathBuf,
    /// (cert PEM, key PEM, cert DER)
    client: (String, String, Vec<u8>),
    rogue_client: (String, String),
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("Argus test CA");
    let rogue = new_ca("Somebody else's CA");
    let server = leaf(&ca, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&ca, &["node-1.agent"], ExtendedKeyUsagePurpose::ClientAuth);
    let rogue_client = leaf(&rogue, &["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca_pem: ca.pem(),
        server_cert: write("server.crt", &server.0),
        server_key: write("server.key", &server.1),
        ca_file: write("ca.crt", &ca.pem()),
        client,
        rogue_client: (rogue_client.0, rogue_client.1),
        _dir: dir,
    }
}

fn tls_config(pki: &Pki, mtls: bool) -> OtlpReceiverConfig {
    let tls = TlsServerConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: mtls.then(|| pki.ca_file.clone()),
        min_version: Default::default(),
    };
    let mut cfg = local_config();
    cfg.grpc.as_mut().unwrap().tls = Some(tls.clone());
    cfg.http.as_mut().unwrap().tls = Some(tls);
    cfg
}

async fn grpc_export(
    addr: SocketAddr,
    pki: &Pki,
    identity: Option<(&str, &str)>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    LogsServiceClient::new(channel)
        .export(logs(1))
        .await
        .map(drop)
        .map_err(|e| format!("export: {e:?}"))
}

async fn http_export(
    addr: SocketAddr,
    pki: &Pki,
    identity: Option<(&str, &str)>,
) -> Result<u16, String> {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", addr);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build()
        .unwrap()
        .post(format!("https://localhost:{}/v1/logs", addr.port()))
        .header("content-type", "application/x-protobuf")
        .body(logs(1).encode_to_vec())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn mtls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = pki();
    let s = start(tls_config(&pki, true)).await;
    let (grpc, http) = (s.grpc.unwrap(), s.http.unwrap());
    let good = Some((pki.client.0.as_str(), pki.client.1.as_str()));
    let rogue = Some((pki.rogue_client.0.as_str(), pki.rogue_client.1.as_str()));

    assert!(
        grpc_export(grpc, &pki, None).await.is_err(),
        "gRPC without a client certificate"
    );
    assert!(
        grpc_export(grpc, &pki, rogue).await.is_err(),
        "gRPC with an untrusted certificate"
    );
    assert!(
        http_export(http, &pki, None).await.is_err(),
        "HTTP without a client certificate"
    );
    assert!(
        http_export(http, &pki, rogue).await.is_err(),
        "HTTP with an untrusted certificate"
    );
    assert_eq!(s.consumer.count(), 0);

    grpc_export(grpc, &pki, good).await.unwrap();
    assert_eq!(http_export(http, &pki, good).await.unwrap(), 200);
    assert_eq!(s.consumer.count(), 2);
    let (_, ctx) = s.consumer.last();
    assert_eq!(
        ctx.client_certificate.as_deref().map(|c| c.to_vec()),
        Some(pki.client.2.clone())
    );

    let failures = |t: &str| {
        s.metric(&format!(
            r#"argus_agent_otlp_receiver_tls_handshake_failures_total{{transport="{t}"}}"#
        ))
    };
    assert!(
        failures("grpc") >= 2.0 && failures("http") >= 2.0,
        "{}",
        s.metrics()
    );
    s.stop().await;
}

#[tokio::test]
async fn tls_without_client_ca_admits_any_client_but_not_plaintext() {
    let pki = pki();
    let s = start(tls_config(&pki, false)).await;
    grpc_export(s.grpc.unwrap(), &pki, None).await.unwrap();
    assert_eq!(http_export(s.http.unwrap(), &pki, None).await.unwrap(), 200);
    assert!(s.consumer.last().1.client_certificate.is_none());

    let plain = reqwest::Client::new()
        .post(s.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(logs(1).encode_to_vec())
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP on a TLS port: {plain:?}");
    assert_eq!(s.consumer.count(), 2);
    s.stop().await;
}

#[tokio::test]
async fn unreadable_or_invalid_tls_files_are_named_at_build() {
    let pki = pki();
    let mut cfg = tls_config(&pki, true);
    let garbage = pki.server_cert.with_file_name("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let g = cfg.grpc.as_mut().unwrap().tls.as_mut().unwrap();
    g.key_file = "/nonexistent/argus.key".into();
    g.client_ca_file = Some(garbage.clone());
    let h = cfg.http.as_mut().unwrap().tls.as_mut().unwrap();
    h.cert_file = garbage;

    let mut registry = prometheus_client::registry::Registry::default();
    let Err(ReceiverError::Config(problems)) = cfg.build_at(
        "receivers.otlp",
        super::support::Recorder::default(),
        &mut registry,
    ) else {
        panic!("bad TLS files must fail the build");
    };
    for field in [
        "receivers.otlp.grpc.tls.key_file: cannot read /nonexistent/argus.key",
        "receivers.otlp.grpc.tls.client_ca_file:",
        "receivers.otlp.http.tls.cert_file:",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(field)),
            "{field} not in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 3, "{problems:#?}");
}
