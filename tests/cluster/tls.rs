//! Node-to-node gRPC over mutual TLS (`[rpc.tls]`), with certificates made at test time:
//! writes sent to a query node reach the ingest node's writer and searches sent to the
//! ingest node reach the query node, both over TLS with client certificates; members
//! advertise `https://` gRPC addresses; a peer without a client certificate, or speaking
//! plaintext, gets nothing.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{DIM, rows, top_id};
use crate::harness::Cluster;

const SETTLE: Duration = Duration::from_secs(30);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Writes ca.pem, and node.pem / node.key: one certificate for every node, naming
/// `strata-node` (the default `rpc.tls.server_name`), good as server and as client.
fn write_pki(dir: &std::path::Path) -> String {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["strata-node".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key)).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

/// Whether a peer gets an HTTP/2 answer (the server's SETTINGS) on `port`: over TLS
/// trusting `ca_pem` when given, presenting `identity` (certificate and key PEM) if any;
/// plaintext otherwise.
async fn answered(port: u16, ca_pem: Option<&str>, identity: Option<(&str, &str)>) -> bool {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut settings = [0u8; 9];
    match ca_pem {
        None => {
            let mut tcp = tcp;
            let _ = tcp.write_all(PREFACE).await;
            matches!(tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut settings)).await, Ok(Ok(_)))
        }
        Some(ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
            roots.add(ca).unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
            let mut config = match identity {
                None => builder.with_no_client_auth(),
                Some((cert, key)) => {
                    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
                    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                    builder.with_client_auth_cert(chain, key).unwrap()
                }
            };
            config.alpn_protocols = vec![b"h2".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from("strata-node").unwrap();
            let Ok(mut tls) = connector.connect(name, tcp).await else { return false };
            let _ = tls.write_all(PREFACE).await;
            let _ = tls.flush().await;
            matches!(tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut settings)).await, Ok(Ok(_)))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_talk_over_mutual_tls() {
    let pki = tempfile::tempdir().unwrap();
    let ca_pem = write_pki(pki.path());
    let path = |name: &str| pki.path().join(name).display().to_string();
    let (cert, key, ca) = (path("node.pem"), path("node.key"), path("ca.pem"));
    let env = [
        ("STRATA__RPC__TLS__CERT_FILE", cert.as_str()),
        ("STRATA__RPC__TLS__KEY_FILE", key.as_str()),
        ("STRATA__RPC__TLS__CA_FILE", ca.as_str()),
    ];
    let Some(mut c) = Cluster::start("t-tls", &env) else { return };
    c.start_nodes(1, 1, 0).await;
    let (ingest, query) = (c.url("ingest-1"), c.url("query-1"));

    let members = c.api.get_ok(&format!("{ingest}/v1/cluster/nodes")).await;
    for member in members["nodes"].as_array().unwrap() {
        assert!(member["grpc_url"].as_str().unwrap().starts_with("https://"), "{member}");
    }

    // Created, written and flushed through the query node: forwarded over gRPC.
    let create = json!({"name": "t", "dimension": DIM, "metric": "l2", "shards": 2, "replication": 1});
    let (status, resp) = c.api.call("POST", &format!("{query}/v1/collections"), Some(&create)).await.unwrap();
    assert_eq!(status, 201, "{resp}");
    c.wait_settled("query-1", 2, SETTLE).await;
    let ids: Vec<u64> = (1..=200).collect();
    let resp = c.api.post_ok(&format!("{query}/v1/collections/t/upsert"), &rows(&ids)).await;
    assert_eq!(resp["upserted"], ids.len(), "{resp}");
    // Searched through the ingest node: forwarded to the query node over gRPC.
    for id in [1u64, 77, 200] {
        let (status, resp) = c.api.search_for(&ingest, "t", id).await.unwrap();
        assert_eq!(status, 200, "{resp}");
        assert_eq!(top_id(&resp), Some(id), "{resp}");
    }

    let port = c.node("query-1").grpc_port();
    let identity = (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap());
    let identity = Some((identity.0.as_str(), identity.1.as_str()));
    assert!(answered(port, Some(&ca_pem), identity).await, "a peer with the cluster's certificate is served");
    assert!(!answered(port, Some(&ca_pem), None).await, "served a peer without a client certificate");
    assert!(!answered(port, None, None).await, "served plaintext gRPC");
}
