//! TLS on the REST port of a real standalone process, with certificates made at test time
//! (rcgen): HTTPS answers and plain HTTP does not; replacing the certificate files is
//! picked up without a restart (a client trusting only the new CA connects once the node
//! reloads); a broken pair keeps the one in force; the CLI tools trust a CA from
//! `STRATA_CA_FILE`.

// Tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const BIN: &str = env!("CARGO_BIN_EXE_strata-test-node");

/// A CA (certificate PEM) and a server certificate and key it signed for localhost.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key)).unwrap();
    Pki { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() }
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// The server, killed when the test ends.
async fn start(dir: &Path, port: u16) -> strata_test_support::KillOnDrop {
    let child = Command::new(BIN)
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("STRATA__TLS__CERT_FILE", dir.join("cert.pem"))
        .env("STRATA__TLS__KEY_FILE", dir.join("key.pem"))
        .env("STRATA_LOG", "warn,strata::tls=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("strata.log")).unwrap())
        .spawn()
        .unwrap();
    strata_test_support::KillOnDrop(child)
}

/// `GET /healthz` from a new client trusting only `ca_pem`: a full handshake every time
/// (a client's TLS session cache would resume without looking at the certificate).
async fn healthz(ca_pem: &str, url: &str) -> Result<String, String> {
    match client_trusting(ca_pem).get(format!("{url}/healthz")).send().await {
        Ok(response) => Ok(response.text().await.unwrap()),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn write_pair(dir: &Path, pki: &Pki) {
    // As cert-manager or a Secret update does: write aside, rename over.
    for (name, pem) in [("cert.pem", &pki.cert), ("key.pem", &pki.key)] {
        std::fs::write(dir.join(format!("{name}.new")), pem).unwrap();
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_serves_tls_and_reloads_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (pki(), pki());
    write_pair(dir.path(), &first);
    let port = strata_test_support::free_port(false).unwrap();
    let _server = start(dir.path(), port).await;
    let url = format!("https://localhost:{port}");
    let log = || std::fs::read_to_string(dir.path().join("strata.log")).unwrap_or_default();

    let trusts_first = first.ca.as_str();
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthz(trusts_first, &url).await.is_err() {
        assert!(Instant::now() < deadline, "no HTTPS: {}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(healthz(trusts_first, &url).await.unwrap(), "ok");
    assert!(log().contains(&format!("listening on https://127.0.0.1:{port}")), "{}", log());
    // Plain HTTP gets no answer, and a client trusting another CA is refused.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP was answered");
    let trusts_second = second.ca.as_str();
    assert!(healthz(trusts_second, &url).await.is_err(), "the second CA is not in use yet");

    // Replace the files: new connections get the new certificate, no restart.
    write_pair(dir.path(), &second);
    let deadline = Instant::now() + Duration::from_secs(15);
    while healthz(trusts_second, &url).await.is_err() {
        assert!(Instant::now() < deadline, "the new certificate was not picked up: {}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthz(trusts_first, &url).await.is_err(), "the old certificate is still served");
    assert!(log().contains("TLS certificate reloaded"), "{}", log());

    // A key that does not match keeps the pair in force.
    std::fs::write(dir.path().join("key.pem"), first.key.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !log().contains("not reloaded") {
        assert!(Instant::now() < deadline, "a mismatched key was not reported: {}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(healthz(trusts_second, &url).await.unwrap(), "ok");

    // The CLI trusts the CA in STRATA_CA_FILE.
    std::fs::write(dir.path().join("ca.pem"), &second.ca).unwrap();
    let status = |ca: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["cluster", "status", "--url", &url]).env("RUST_BACKTRACE", "0");
        match ca {
            Some(ca) => cmd.env("STRATA_CA_FILE", ca),
            None => cmd.env_remove("STRATA_CA_FILE"),
        };
        cmd.output().unwrap()
    };
    let trusted = status(Some(&dir.path().join("ca.pem")));
    assert!(trusted.status.success(), "{trusted:?}");
    assert!(!status(None).status.success(), "the CLI trusted an unknown CA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_tls_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = strata_test_support::free_port(false).unwrap();
    let out = Command::new(BIN)
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("STRATA__TLS__CERT_FILE", dir.path().join("cert.pem"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("tls.cert_file and tls.key_file go together"), "{said}");
}
