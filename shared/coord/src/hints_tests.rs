//! Head hints against a real etcd that stalls (SIGSTOP) and dies (kill), then comes back.

// These tests run against a real etcd, in real time.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use strata_test_support::{EtcdServer, require_etcd};
use strata_types::time::SystemClock;

use super::{HEAD_RETRY_AFTER, HeadHints, Unavailable};
use crate::etcd::{Etcd, EtcdConfig};
use crate::{Coordination, Head};

fn config(etcd: &EtcdServer) -> EtcdConfig {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        cluster: format!("hints{}-{nanos}", std::process::id()),
        session_ttl_s: 10,
        connect_timeout_ms: 5000,
        request_timeout_ms: 5000,
        ..EtcdConfig::default()
    }
}

/// A stalled or dead etcd makes a head read answer `Unavailable` within the bound (not
/// after etcd's own request timeout), later reads skip etcd until the retry window ends,
/// and heads are read again once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_reads_give_up_quickly_on_a_stalled_or_dead_etcd_and_recover() {
    if !require_etcd() {
        return;
    }
    let mut server = EtcdServer::start().unwrap();
    let clock = SystemClock;
    let coord = Etcd::connect(config(&server), std::sync::Arc::new(SystemClock)).await.unwrap();
    let head = Head { wal_seq: 7, manifest_version: 2 };
    coord.publish_head("c/0", head).await.unwrap();
    let hints = HeadHints::default();
    assert_eq!(hints.read(coord.as_ref(), &clock, "c/0").await, Ok(Some(head)));
    assert_eq!(hints.read(coord.as_ref(), &clock, "c/1").await, Ok(None));

    // Stalled: the read gives up (etcd's own request timeout is 5 s).
    server.pause();
    let asked = tokio::time::Instant::now();
    assert_eq!(hints.read(coord.as_ref(), &clock, "c/0").await, Err(Unavailable));
    assert!(asked.elapsed() < Duration::from_secs(4), "waited {:?} for a stalled etcd", asked.elapsed());
    assert!(hints.presumed_down(&clock));
    // Within the window, etcd is not asked at all.
    assert_eq!(hints.read(coord.as_ref(), &clock, "c/0").await, Err(Unavailable));

    // Dead.
    server.resume();
    server.stop();
    tokio::time::sleep(HEAD_RETRY_AFTER).await;
    assert_eq!(hints.read(coord.as_ref(), &clock, "c/0").await, Err(Unavailable));

    // Back (same data): heads are read again once the window passed.
    server.restart().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(HEAD_RETRY_AFTER).await;
        if hints.read(coord.as_ref(), &clock, "c/0").await == Ok(Some(head)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "heads were not read again after etcd came back");
    }
    assert!(!hints.presumed_down(&clock));
}
