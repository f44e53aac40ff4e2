//! `strata certs new`: a private CA and one certificate for every node of a cluster, for
//! deployments without a certificate manager (docker-compose, a dev Kubernetes).
//!
//! The node certificate names `strata-node` (the default `rpc.tls.server_name`) and the
//! names given (service names, `localhost`, `127.0.0.1`), and is good as a server and as a
//! client certificate, so one file pair serves REST over TLS and mutual TLS between nodes.
//! The CA's key is not kept: to add names, make a new set and replace all three files.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// Writes `ca.pem`, `node.pem` and `node.key` (mode 0600) into `dir`.
pub fn new_cluster_certificates(dir: &Path, names: &[String]) -> Result<(), String> {
    let err = |e: rcgen::Error| format!("making certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(DnType::CommonName, "Strata cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let mut sans = vec!["strata-node".to_owned()];
    sans.extend(names.iter().filter(|n| *n != "strata-node").cloned());
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(sans).map_err(|e| format!("invalid name: {e}"))?;
    params.distinguished_name.push(DnType::CommonName, "strata-node");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key)).map_err(err)?;

    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("ca.pem", &ca.pem(), 0o644)?;
    write("node.pem", &cert.pem(), 0o644)?;
    write("node.key", &key.serialize_pem(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Certificates;

    #[test]
    fn the_pair_loads_and_the_ca_verifies_it() {
        let dir = tempfile::tempdir().unwrap();
        new_cluster_certificates(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let certificates = Certificates::load(&dir.path().join("node.pem"), &dir.path().join("node.key")).unwrap();
        certificates.mutual_server_config(&dir.path().join("ca.pem")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("node.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
