//! The admin page (`GET /ui`).
//!
//! In process: a standalone router serves it as self-contained HTML, and answers every
//! endpoint the page polls.
//!
//! Against a real multi-process cluster (etcd + SeaweedFS + `strata` processes, through
//! `cluster/harness.rs`): headless Chromium loads the page from a query node, runs its
//! script, and the rendered DOM must show every node, both shards with their serving
//! replicas, the collection's rows and the cache section; a screenshot must come out.
//! Ingest and compactor nodes do not serve the page.
//!
//! Chromium comes from `STRATA_CHROMIUM_BIN` or `chromium` / `chromium-browser` on `PATH`
//! (`scripts/install_test_browser.sh` installs it). Without it, or without etcd /
//! SeaweedFS, the cluster test is skipped with a note, unless `STRATA_REQUIRE_SERVERS=1`
//! (then it fails). `STRATA_UI_SCREENSHOT=<path>` keeps a copy of the screenshot when it
//! is under 300 KB (how `docs/ui-screenshot.png` is made).

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod common;

#[allow(dead_code)]
#[path = "cluster/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "cluster/harness.rs"]
mod harness;

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use client::{DIM, rows};
use harness::{Cluster, Role};
use serde_json::json;
use tower::ServiceExt;

/// Bound on the cluster settling.
const SETTLE: Duration = Duration::from_secs(30);
/// Bound on one Chromium run (its virtual time budget is 5 s; start-up is the slow part).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest screenshot kept in the repository.
const MAX_KEPT_SCREENSHOT: u64 = 300 * 1024;

#[tokio::test]
async fn ui_is_served_as_self_contained_html_on_a_standalone_router() {
    let t = common::start(|_| {}).await;
    let req = Request::get("/ui").body(Body::empty()).unwrap();
    let resp = t.server.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "content-type {content_type}");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let html = std::str::from_utf8(&body).unwrap();
    assert_eq!(html, strata::ui::PAGE);
    assert!(html.contains("<title>Strata admin</title>"), "{}", &html[..200]);
    // Self-contained: no absolute URL anywhere (no CDN, font or script from elsewhere).
    assert!(!html.contains("://"), "the page refers to an external URL");
    for section in ["nodes-table", "shards-table", "collections-body", "cache-table", "activity-list"] {
        assert!(html.contains(&format!("id=\"{section}\"")), "no #{section} in the page");
    }
    // Every endpoint the page polls answers here.
    t.create("docs", 3, "cosine").await;
    for path in ["/v1/node", "/v1/cluster/nodes", "/v1/cluster/shards", "/v1/collections", "/v1/collections/docs"] {
        assert!(html.contains(path.trim_end_matches("docs")), "the page does not poll {path}");
        let (status, body) = t.call("GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_page_renders_a_live_cluster_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let Some(mut c) = Cluster::start("ui", &[]) else { return };
    c.start_nodes(1, 2, 1).await;
    c.create_collection("docs", DIM, 2, 2).await;
    c.wait_settled("query-1", 2, SETTLE).await;

    // 300 rows flushed into segments, 50 more left in the WAL.
    let ingest = c.url("ingest-1");
    let ids: Vec<u64> = (1..=350).collect();
    for chunk in ids[..300].chunks(100) {
        c.api.post_ok(&format!("{ingest}/v1/collections/docs/upsert"), &rows(chunk)).await;
    }
    c.api.post_ok(&format!("{ingest}/v1/collections/docs/flush"), &json!({})).await;
    c.api.post_ok(&format!("{ingest}/v1/collections/docs/upsert"), &rows(&ids[300..])).await;
    let shards = c.wait_settled("query-1", 2, SETTLE).await;
    let page = format!("{}/ui", c.url("query-2"));
    let described = c.api.get_ok(&format!("{}/v1/collections/docs", c.url("query-2"))).await;
    assert_eq!(described["stats"]["rows"], 350, "{described}");

    // Every process serves the page (it answers the whole API, decision 0016).
    for other in ["ingest-1", "compactor-1"] {
        let (status, body) = c.api.call("GET", &format!("{}/ui", c.url(other)), None).await.unwrap();
        assert_eq!(status, 200, "{other} does not serve /ui: {body}");
    }

    let dir = tempfile::Builder::new().prefix("strata-ui-").tempdir().unwrap();
    let dom = run_browser(&chromium, dir.path(), "dom", &["--dump-dom", &page]).await;
    let dom = String::from_utf8(dom).unwrap();
    let context = || format!("rendered DOM of {page}:\n{dom}");

    assert!(dom.contains("<h1>Strata admin</h1>"), "{}", context());
    assert!(!dom.contains("class=\"error\""), "the page shows an error; {}", context());
    assert!(dom.contains("data-this-node=\"query-2\""), "{}", context());
    assert!(!dom.contains("data-refreshes=\"0\"") && dom.contains("data-refreshes="), "never refreshed; {}", context());
    let mut all = c.ids(Role::Ingest);
    all.extend(c.ids(Role::Query));
    all.extend(c.ids(Role::Compactor));
    assert_eq!(all.len(), 4);
    for id in &all {
        assert!(dom.contains(&format!("data-node-row=\"{id}\"")), "node {id} missing; {}", context());
    }
    for s in &shards {
        let shard = s["shard"].as_u64().unwrap();
        let row = row_of(&dom, &format!("data-shard-row=\"docs/{shard}\""))
            .unwrap_or_else(|| panic!("no row for shard docs/{shard}; {}", context()));
        assert!(row.contains("data-settled=\"true\""), "shard {shard} not settled: {row}");
        let replicas = s["serving"].as_array().unwrap();
        assert_eq!(replicas.len(), 2, "{s}");
        assert_eq!(row.matches("data-replica=").count(), 2, "shard {shard}: {row}");
        for r in replicas {
            let node = r["node"].as_str().unwrap();
            assert!(
                row.contains(&format!("data-replica=\"{node}\" data-state=\"serving\"")),
                "shard {shard}: replica {node} not shown serving: {row}"
            );
        }
        let writer = s["writer"].as_str().unwrap();
        assert!(row.contains(&format!("data-writer=\"{writer}\"")), "shard {shard}: writer {writer}: {row}");
        // Per-shard statistics from describe.
        let stats = &described["stats"]["shards"][shard as usize];
        let shard_stats = format!("data-collection=\"docs\" data-shard=\"{shard}\" data-rows=\"{}\"", stats["rows"]);
        assert!(dom.contains(&shard_stats), "no {shard_stats}; {}", context());
    }
    assert!(dom.contains("data-collection-table=\"docs\" data-rows=\"350\""), "rows of docs; {}", context());
    for stat in ["memory_hits", "disk_hits", "misses", "bytes_fetched", "bytes_served"] {
        assert!(dom.contains(&format!("data-cache=\"{stat}\"")), "cache statistic {stat}; {}", context());
    }
    assert!(dom.contains("data-event=\"snapshot\""), "no activity; {}", context());

    let png_path = dir.path().join("ui.png");
    let shot = format!("--screenshot={}", png_path.display());
    run_browser(&chromium, dir.path(), "screenshot", &[&shot, "--window-size=1280,1000", &page]).await;
    let png = std::fs::read(&png_path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png_path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "screenshot of only {} bytes: a blank page?", png.len());
    println!("screenshot: {} bytes", png.len());
    if let Some(keep) = std::env::var_os("STRATA_UI_SCREENSHOT") {
        if (png.len() as u64) < MAX_KEPT_SCREENSHOT {
            std::fs::write(&keep, &png).unwrap();
            println!("screenshot kept at {}", Path::new(&keep).display());
        } else {
            println!("screenshot not kept: {} bytes is over {MAX_KEPT_SCREENSHOT}", png.len());
        }
    }
}

/// On a server that checks API keys the page asks for one: the key form shows and the
/// sections say the key is missing, instead of failing silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_asks_for_a_key_when_the_server_checks_them() {
    let Some(chromium) = chromium() else { return };
    let t = common::start(|config| {
        let sha256 = strata::auth::hash_hex("strata_ui-test-token");
        let key = strata::auth::KeyConfig {
            name: "ui".into(),
            role: strata::auth::KeyRole::Admin,
            sha256,
            collections: None,
        };
        config.auth.keys = vec![key];
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}/ui", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, t.server.router.clone()).into_future());

    let dir = tempfile::Builder::new().prefix("strata-ui-").tempdir().unwrap();
    let dom = String::from_utf8(run_browser(&chromium, dir.path(), "dom", &["--dump-dom", &page]).await).unwrap();
    assert!(dom.contains("<h1>Strata admin</h1>"), "the page itself needs no key: {dom}");
    let form = dom.split("<form id=\"key-form\"").nth(1).expect("no key form").split('>').next().unwrap();
    assert!(!form.contains("hidden"), "the key form stays hidden: {dom}");
    assert!(dom.contains("missing API key"), "the sections do not say why they are empty: {dom}");
}

/// The HTML from `marker` to the end of its table row.
fn row_of<'a>(dom: &'a str, marker: &str) -> Option<&'a str> {
    let start = dom.find(marker)?;
    let end = dom[start..].find("</tr>")?;
    Some(&dom[start..start + end])
}

/// The Chromium binary, or `None` (after a note) when there is none and
/// `STRATA_REQUIRE_SERVERS` is not `1`; a panic when it is.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("STRATA_CHROMIUM_BIN").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = std::env::var("STRATA_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "chromium is not available but STRATA_REQUIRE_SERVERS=1: run scripts/install_test_browser.sh or set STRATA_CHROMIUM_BIN"
        );
        eprintln!(
            "skipping: chromium is not available (scripts/install_test_browser.sh installs it; STRATA_REQUIRE_SERVERS=1 makes this a failure)"
        );
    }
    found
}

/// Runs headless Chromium with `args` after the common flags (own profile under `dir`,
/// no network but the page's, 5 s of virtual time); returns its stdout. Panics with its
/// stderr when it fails or overruns [`BROWSER_TIMEOUT`].
async fn run_browser(chromium: &Path, dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let profile = dir.join(format!("profile-{name}"));
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let mut child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let status = match tokio::time::timeout(BROWSER_TIMEOUT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "chromium ({name}) did not finish within {BROWSER_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
    };
    assert!(
        status.success(),
        "chromium ({name}) failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    std::fs::read(&out_path).unwrap()
}
