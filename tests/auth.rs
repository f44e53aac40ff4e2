//! API keys on a real standalone process: keys made by `strata keys new`, every route of
//! the role table answered 401 without a key, 403 below its role and by its handler at
//! it; a key limited to one collection; reloads on SIGHUP and on a keys-file change; the
//! audit log; and the refusal to serve an open API beyond loopback.

// Tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use strata::auth::{KeyRole, ROUTES};

const BIN: &str = env!("CARGO_BIN_EXE_strata-test-node");

struct Server {
    /// Killed when the test ends, passed or not.
    child: strata_test_support::KillOnDrop,
    url: String,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server answers `/healthz`.
    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{}/healthz", self.url)).await.is_err() {
            assert!(Instant::now() < deadline, "server did not come up: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A key made by the CLI: its token, and the `[[keys]]` entry for the keys file.
struct NewKey {
    token: String,
    entry: String,
}

fn new_key(name: &str, role: &str, collections: Option<&str>) -> NewKey {
    let mut cmd = Command::new(BIN);
    cmd.args(["keys", "new", "--name", name, "--role", role]);
    if let Some(collections) = collections {
        cmd.args(["--collections", collections]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (token, entry) = stdout.split_once('\n').unwrap();
    assert!(token.starts_with("strata_"), "{stdout}");
    assert!(!entry.contains(token), "the entry holds the hash, never the token");
    NewKey { token: token.to_owned(), entry: entry.to_owned() }
}

fn spawn(dir: &Path, listen: &str, extra: &[&str]) -> (Child, PathBuf) {
    let log = dir.join(format!("strata-{}.log", listen.replace([':', '.'], "-")));
    let child = Command::new(BIN)
        .args(["standalone", "--listen", listen])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env("STRATA_LOG", "warn,strata::audit=info")
        .env_remove("STRATA_API_KEY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

async fn start(dir: &Path, config: &Path) -> Server {
    let port = strata_test_support::free_port(false).unwrap();
    let (child, log) = spawn(dir, &format!("127.0.0.1:{port}"), &["--config", config.to_str().unwrap()]);
    let server = Server { child: strata_test_support::KillOnDrop(child), url: format!("http://127.0.0.1:{port}"), log };
    server.wait_up().await;
    server
}

async fn call(server: &Server, method: &str, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn create(server: &Server, name: &str, token: &str) {
    let body = json!({"name": name, "dimension": 2, "metric": "l2"});
    let (status, answer) = call(server, "POST", "/v1/collections", Some(token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// The request each route template is probed with: a concrete path and a body its
/// handler accepts or refuses on its own terms (never for want of a key).
fn probe(method: &str, template: &str) -> (String, Value) {
    // Dropping is probed on a collection of its own, so the others stay.
    let collection = if method == "DELETE" && template == "/v1/collections/{name}" { "victim" } else { "docs" };
    let path = template.replace("{name}", collection).replace("{id}", "no-such-node");
    let body = match (method, template) {
        ("POST", "/v1/collections") => json!({"name": "made", "dimension": 2, "metric": "l2"}),
        ("POST", t) if t.ends_with("/search") => json!({"vector": [0.5, 0.5], "top_k": 1}),
        ("POST", t) if t.ends_with("/upsert") => json!({"rows": [{"id": 1, "vector": [0.5, 0.5]}]}),
        ("POST", _) => json!({}),
        _ => Value::Null,
    };
    (path, body)
}

fn admin_config(dir: &Path, keys_file: &Path) -> PathBuf {
    let config = dir.join("strata.toml");
    std::fs::write(&config, format!("[auth]\nkeys_file = {:?}\n", keys_file.display().to_string())).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_key_whose_role_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = [new_key("reader", "read", None), new_key("writer", "write", None), new_key("admin", "admin", None)];
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, keys.iter().map(|k| k.entry.as_str()).collect::<String>()).unwrap();
    let server = start(dir.path(), &admin_config(dir.path(), &keys_file)).await;
    let [reader, writer, admin] = &keys;
    let roles = [(KeyRole::Read, reader), (KeyRole::Write, writer), (KeyRole::Admin, admin)];
    for name in ["docs", "victim"] {
        create(&server, name, &admin.token).await;
    }

    let public = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/ui"];
    for &(method, template, needed) in ROUTES {
        let (path, body) = probe(method, template);
        let what = format!("{method} {path}");
        let (status, answer) = call(&server, method, &path, None, body.clone()).await;
        if public.contains(&template) {
            assert!(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE, "{what}: {status} {answer}");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a key: {answer}");
        assert_eq!(answer["error"]["code"], "unauthenticated", "{what}");
        for (role, key) in roles {
            let (status, answer) = call(&server, method, &path, Some(&key.token), body.clone()).await;
            if role < needed {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} as {role:?}: {answer}");
                assert_eq!(answer["error"]["code"], "permission_denied", "{what}");
            } else {
                // The handler answered: whatever it said, it was not about the key, and
                // the route exists (the fallback says "no route").
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                    "{what} as {role:?}: {answer}"
                );
                assert!(!answer.to_string().contains("no route"), "{what} is in the role table but not served");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what} is in the role table but not served");
                // Each route is run once, by the weakest key allowed to.
                break;
            }
        }
    }

    // A path no route serves: 401 without a key, 404 with one.
    assert_eq!(call(&server, "GET", "/v2/nothing", None, Value::Null).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&server, "GET", "/v2/nothing", Some(&reader.token), Value::Null).await.0, StatusCode::NOT_FOUND);

    // The tools send STRATA_API_KEY.
    let search = |key: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["search", "--url", &server.url, "--collection", "docs", "--vector", "[0.5, 0.5]", "--top-k", "1"]);
        cmd.env("RUST_BACKTRACE", "0");
        match key {
            Some(key) => cmd.env("STRATA_API_KEY", key),
            None => cmd.env_remove("STRATA_API_KEY"),
        };
        cmd.output().unwrap()
    };
    let refused = search(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("API key"), "{refused:?}");
    let allowed = search(Some(&reader.token));
    assert!(allowed.status.success(), "{allowed:?}");

    // Admin requests are in the audit log with who made them.
    let log = server.log();
    let audited = |needle: &str| log.lines().any(|l| l.contains("strata::audit") && l.contains(needle));
    assert!(audited("key=\"admin\"") && audited("path=\"/v1/collections/victim\""), "{log}");
    assert!(audited("key=\"reader\"") && audited("status=403"), "denied admin requests are audited: {log}");
    assert!(!log.contains(&admin.token), "tokens never reach the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_a_collection_sees_and_touches_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let admin = new_key("admin", "admin", None);
    let docs = new_key("docs-app", "write", Some("docs"));
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, format!("{}{}", admin.entry, docs.entry)).unwrap();
    let server = start(dir.path(), &admin_config(dir.path(), &keys_file)).await;
    for name in ["docs", "logs"] {
        create(&server, name, &admin.token).await;
    }
    let token = Some(docs.token.as_str());
    let rows = json!({"rows": [{"id": 1, "vector": [1.0, 0.0]}]});
    assert_eq!(call(&server, "POST", "/v1/collections/docs/upsert", token, rows.clone()).await.0, StatusCode::OK);
    let (status, answer) = call(&server, "POST", "/v1/collections/logs/upsert", token, rows).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(answer["error"]["message"].as_str().unwrap().contains("`logs`"), "{answer}");
    let (status, listed) = call(&server, "GET", "/v1/collections", token, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = listed["collections"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, [json!("docs")], "{listed}");
    let (_, all) = call(&server, "GET", "/v1/collections", Some(&admin.token), Value::Null).await;
    assert_eq!(all["collections"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(call(&server, "GET", "/v1/collections/logs", token, Value::Null).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&server, "GET", "/v1/cluster/nodes", token, Value::Null).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reload_on_sighup_and_when_the_keys_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, newer) =
        (new_key("old", "read", None), new_key("new", "read", None), new_key("newer", "read", None));
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, &old.entry).unwrap();
    let server = start(dir.path(), &admin_config(dir.path(), &keys_file)).await;
    let status = |token: &str| {
        let token = token.to_owned();
        let server = &server;
        async move { call(server, "GET", "/v1/collections", Some(&token), Value::Null).await.0 }
    };
    assert_eq!(status(&old.token).await, StatusCode::OK);
    assert_eq!(status(&new.token).await, StatusCode::UNAUTHORIZED);

    // Replace the file as a Secret update does (write aside, rename over), then SIGHUP.
    let aside = dir.path().join("keys.toml.new");
    std::fs::write(&aside, &new.entry).unwrap();
    std::fs::rename(&aside, &keys_file).unwrap();
    // SAFETY: plain kill(2) on a child we own.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&new.token).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the keys: {}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&old.token).await, StatusCode::UNAUTHORIZED, "a removed key stops working");
    assert!(server.log().contains("SIGHUP"), "{}", server.log());

    // No signal: the file's change alone is noticed (the node checks every 2 s).
    std::fs::write(&keys_file, format!("{}\n{}", new.entry, newer.entry)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&newer.token).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "the keys file change was not noticed: {}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file keeps the keys in force and says why.
    std::fs::write(&keys_file, "[[keys]]\nname = \"half\"\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().contains("not reloaded") {
        assert!(Instant::now() < deadline, "a broken keys file was not reported: {}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&newer.token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_beyond_loopback_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let port = strata_test_support::free_port(false).unwrap();
    let everywhere = format!("0.0.0.0:{port}");
    let (mut child, log) = spawn(dir.path(), &everywhere, &[]);
    let status = child.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("refusing to serve the API") && said.contains("--insecure"), "{said}");

    let (child, log) = spawn(dir.path(), &everywhere, &["--insecure"]);
    let server = Server { child: strata_test_support::KillOnDrop(child), url: format!("http://127.0.0.1:{port}"), log };
    server.wait_up().await;
    let (status, _) = call(&server, "GET", "/v1/collections", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(server.log().contains("without API keys"), "--insecure warns: {}", server.log());
}
