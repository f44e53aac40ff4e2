//! Tests against a real etcd (started by `strata-test-support`; skipped when etcd is not
//! installed unless `STRATA_REQUIRE_SERVERS=1`, then they fail).

// These tests run against a real etcd, in real time.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use etcd_client::GetOptions;
use strata_test_support::{EtcdServer, require_etcd};

use strata_types::time::SystemClock;

use super::{Etcd, EtcdConfig};
use crate::conformance::{self, eventually};
use crate::{Coordination, Head, LeaseKind, Member, Role, ServeState, ServingRecord};

/// A cluster prefix no other test (or earlier run) uses.
fn config(etcd: &EtcdServer, ttl_s: u64) -> EtcdConfig {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        cluster: format!("t{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
        session_ttl_s: ttl_s,
        connect_timeout_ms: 5000,
        request_timeout_ms: 2000,
        ..EtcdConfig::default()
    }
}

fn member(node: &str, role: Role) -> Member {
    Member {
        node_id: node.to_owned(),
        role,
        http_url: format!("http://{node}:7700"),
        grpc_url: format!("http://{node}:7701"),
        started_ms: 1,
    }
}

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn wait_for(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The etcd lease a key is bound to, read with a separate client.
async fn key_lease(etcd: &EtcdServer, key: &str) -> Option<i64> {
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None).await.ok()?;
    let got = client.get(key, None::<GetOptions>).await.ok()?;
    got.kvs().first().map(|kv| kv.lease())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_conformance_suite() {
    if !require_etcd() {
        return;
    }
    let etcd = EtcdServer::start().expect("start etcd");
    let config = config(&etcd, 5);
    conformance::run(|| async {
        Etcd::connect(config.clone(), Arc::new(SystemClock)).await.expect("connect") as Arc<dyn Coordination>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_compare_numerically_and_survive_many_digits() {
    if !require_etcd() {
        return;
    }
    let etcd = EtcdServer::start().expect("start etcd");
    let a = Etcd::connect(config(&etcd, 5), Arc::new(SystemClock)).await.expect("connect");
    a.publish_head("c/1", Head { wal_seq: u64::MAX, manifest_version: 0 }).await.unwrap();
    a.publish_head("c/1", Head { wal_seq: 1, manifest_version: 9 }).await.unwrap();
    assert_eq!(a.head("c/1").await.unwrap(), Some(Head { wal_seq: u64::MAX, manifest_version: 9 }));
    // A key that extends another key's field name is a different head.
    assert_eq!(a.head("c/1/wal").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_invalidates_leases_and_re_registers() {
    if !require_etcd() {
        return;
    }
    let etcd = EtcdServer::start().expect("start etcd");
    let config = config(&etcd, 3);
    let prefix = format!("/strata/{}/", config.cluster);
    let a = Etcd::connect(config.clone(), Arc::new(SystemClock)).await.expect("connect a");
    let b = Etcd::connect(config.clone(), Arc::new(SystemClock)).await.expect("connect b");
    a.register(member("node-a", Role::Ingest)).await.unwrap();
    let serving = ServingRecord {
        collection_id: "c".to_owned(),
        shard: 0,
        node_id: "node-a".to_owned(),
        state: ServeState::Serving,
    };
    a.set_serving(serving).await.unwrap();
    let held = a.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().expect("free lease");
    assert!(a.lease_valid(&held));
    assert_eq!(held.session, a.session_id().unsigned_abs());

    // Another process with the same holder name (another session) does not get it.
    let twin = Etcd::connect(config.clone(), Arc::new(SystemClock)).await.expect("connect twin");
    assert!(twin.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().is_none());
    drop(twin);

    let old = a.session_id();
    let mut outside = etcd_client::Client::connect([etcd.endpoint()], None).await.unwrap();
    outside.lease_revoke(old).await.unwrap();

    wait_for("the lease to turn invalid", 5, async || !a.lease_valid(&held)).await;
    wait_for("a new session", 10, async || a.session_id() != old).await;
    let new = a.session_id();
    let member_key = format!("{prefix}members/ingest/node-a");
    let serving_key = format!("{prefix}leases/serve/c/0/node-a");
    wait_for("re-registration under the new session", 10, async || {
        key_lease(&etcd, &member_key).await == Some(new) && key_lease(&etcd, &serving_key).await == Some(new)
    })
    .await;
    eventually(b.as_ref(), "node-a back in the view", |v| v.member(Role::Ingest, "node-a").is_some()).await;
    assert!(!a.lease_valid(&held), "a lease never comes back with a new session");

    // The revoke freed the lease: another node takes it, with a higher epoch.
    let taken = b.try_acquire(LeaseKind::Writer, "c/0", "node-b").await.unwrap().expect("lease freed by the revoke");
    assert!(taken.epoch > held.epoch);
    assert!(a.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().is_none());
    // The old lease's release must not free the new holder's lease.
    a.release(&held).await.unwrap();
    assert!(b.lease_valid(&taken));
    assert!(a.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_expires_leases_locally_and_the_node_recovers() {
    if !require_etcd() {
        return;
    }
    let mut etcd = EtcdServer::start().expect("start etcd");
    let a = Etcd::connect(config(&etcd, 2), Arc::new(SystemClock)).await.expect("connect");
    a.register(member("node-a", Role::Query)).await.unwrap();
    let held = a.try_acquire(LeaseKind::Compact, "c/0", "node-a").await.unwrap().expect("free lease");
    let old = a.session_id();
    tokio::task::block_in_place(|| etcd.stop());
    // No etcd to ask: the local deadline alone ends the lease within the TTL.
    let stopped = tokio::time::Instant::now();
    wait_for("the lease to expire locally", 4, async || !a.lease_valid(&held)).await;
    assert!(stopped.elapsed() <= Duration::from_millis(3000), "expired after {:?}", stopped.elapsed());
    assert!(a.try_acquire(LeaseKind::Compact, "c/1", "node-a").await.is_err(), "no leases without a session");
    tokio::task::block_in_place(|| etcd.restart()).expect("restart etcd");
    wait_for("a new session", 20, async || a.session_id() != old).await;
    eventually(a.as_ref(), "node-a re-registered", |v| v.member(Role::Query, "node-a").is_some()).await;
    wait_for("a lease under the new session", 10, async || {
        a.try_acquire(LeaseKind::Compact, "c/0", "node-a").await.ok().flatten().is_some_and(|l| a.lease_valid(&l))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_etcd_is_re_formed_without_restarting_the_client() {
    if !require_etcd() {
        return;
    }
    let mut etcd = EtcdServer::start().expect("start etcd");
    let config = config(&etcd, 3);
    let a = Etcd::connect(config.clone(), Arc::new(SystemClock)).await.expect("connect");
    a.register(member("node-a", Role::Query)).await.unwrap();
    let serving = ServingRecord {
        collection_id: "c".to_owned(),
        shard: 1,
        node_id: "node-a".to_owned(),
        state: ServeState::Loading,
    };
    a.set_serving(serving.clone()).await.unwrap();
    a.publish_head("c/1", Head { wal_seq: 7, manifest_version: 2 }).await.unwrap();
    a.set_drain("node-z", true).await.unwrap();
    let held = a.try_acquire(LeaseKind::Writer, "c/1", "node-a").await.unwrap().expect("free lease");
    eventually(a.as_ref(), "the drain", |v| v.drains.contains("node-z")).await;

    tokio::task::block_in_place(|| etcd.restart_wiped()).expect("restart wiped etcd");

    wait_for("the head to be gone", 20, async || matches!(a.head("c/1").await, Ok(None))).await;
    eventually(a.as_ref(), "the view re-formed", |v| {
        v.member(Role::Query, "node-a").is_some()
            && v.serving_of("c", 1).any(|r| *r == serving)
            && v.drains.is_empty()
            && v.leases.is_empty()
    })
    .await;
    assert!(!a.lease_valid(&held), "leases do not survive a wiped etcd");
    let fresh = Etcd::connect(config, Arc::new(SystemClock)).await.expect("connect after the wipe");
    // connect returns with the view already listed.
    assert!(fresh.view().borrow().member(Role::Query, "node-a").is_some(), "a's member seen by a new client");
    let again = a.try_acquire(LeaseKind::Writer, "c/1", "node-a").await.unwrap().expect("lease free after the wipe");
    assert!(a.lease_valid(&again));
}

/// Certificates for [`etcd_over_tls_with_client_certificates_and_a_password`]: a CA, etcd's
/// own certificate for 127.0.0.1, and a client certificate.
fn write_pki(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    for (name, sans, usage) in [
        ("server", vec!["localhost".to_owned(), "127.0.0.1".to_owned()], ExtendedKeyUsagePurpose::ServerAuth),
        ("client", vec!["strata".to_owned()], ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// etcd serving TLS only, requiring client certificates, with auth enabled: a node with
/// the CA, a client certificate and the user's password connects and coordinates; with a
/// wrong password, without a client certificate or over plain HTTP it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificates_and_a_password() {
    if !require_etcd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let file = |name: &str| Some(dir.path().join(name));
    let etcd = EtcdServer::start_with_tls(strata_test_support::EtcdTls {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        ca_file: dir.path().join("ca.pem"),
    })
    .unwrap();
    let tls =
        super::EtcdTlsConfig { ca_file: file("ca.pem"), cert_file: file("client.pem"), key_file: file("client.key") };
    let secure = EtcdConfig { tls: tls.clone(), connect_timeout_ms: 3000, ..config(&etcd, 5) };

    // Turn etcd's auth on: a root user with a password.
    let mut admin =
        etcd_client::Client::connect([etcd.endpoint()], Some(secure.connect_options().unwrap())).await.unwrap();
    admin.user_add("root", "s3cret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let with_password = EtcdConfig { user: Some("root".into()), password: Some("s3cret".into()), ..secure.clone() };
    let coord = Etcd::connect(with_password.clone(), Arc::new(SystemClock))
        .await
        .expect("TLS, client certificate and password");
    coord.register(member("n1", Role::Query)).await.unwrap();
    eventually(coord.as_ref(), "the member is listed", |view| view.members.iter().any(|m| m.node_id == "n1")).await;

    // (Without a password etcd takes the client certificate's common name as the user.)
    let refused = [
        ("a wrong password", EtcdConfig { password: Some("guess".into()), ..with_password.clone() }),
        (
            "no client certificate",
            EtcdConfig {
                tls: super::EtcdTlsConfig { ca_file: file("ca.pem"), ..Default::default() },
                ..with_password.clone()
            },
        ),
        (
            "plain HTTP",
            EtcdConfig {
                endpoints: vec![etcd.endpoint().replace("https://", "http://")],
                tls: Default::default(),
                ..with_password.clone()
            },
        ),
    ];
    for (what, config) in refused {
        assert!(Etcd::connect(config, Arc::new(SystemClock)).await.is_err(), "connected with {what}");
    }
}
