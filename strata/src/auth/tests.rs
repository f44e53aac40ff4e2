//! Unit tests of API keys: key parsing and hashing, the route table, the layer's answers
//! over a small router, reloads and the exposure check. The real-process test is
//! `tests/tests/auth.rs`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use tower::ServiceExt;

use super::keys::{KeySet, new_token};
use super::*;

fn key(name: &str, role: KeyRole, token: &str) -> KeyConfig {
    KeyConfig { name: name.to_owned(), role, sha256: hash_hex(token), collections: None }
}

fn scoped(name: &str, token: &str, collections: &[&str]) -> KeyConfig {
    KeyConfig {
        collections: Some(collections.iter().map(|c| c.to_string()).collect()),
        ..key(name, KeyRole::Write, token)
    }
}

fn keys_config(keys: Vec<KeyConfig>) -> AuthConfig {
    AuthConfig { keys, ..AuthConfig::default() }
}

#[test]
fn hash_is_sha256_in_lowercase_hex() {
    assert_eq!(hash_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn key_set_finds_tokens_by_hash_only() {
    let set = KeySet::new(&[key("alice", KeyRole::Read, "t-alice"), key("bob", KeyRole::Admin, "t-bob")]).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.find("t-alice").unwrap().role, KeyRole::Read);
    assert_eq!(&*set.find("t-bob").unwrap().access.key_name, "bob");
    assert!(set.find("t-carol").is_none());
    assert!(set.find(&hash_hex("t-alice")).is_none(), "the hash itself is not a token");
}

#[test]
fn malformed_keys_are_refused_naming_the_key() {
    let cases = [
        (vec![key(" ", KeyRole::Read, "a")], "empty `name`"),
        (vec![key("a", KeyRole::Read, "x"), key("a", KeyRole::Read, "y")], "`a` is used twice"),
        (vec![key("a", KeyRole::Read, "x"), key("b", KeyRole::Write, "x")], "`b` has the same token"),
        (vec![KeyConfig { sha256: "abc".into(), ..key("short", KeyRole::Read, "x") }], "`short`: `sha256` must be 64"),
        (vec![KeyConfig { sha256: "zz".repeat(32), ..key("nothex", KeyRole::Read, "x") }], "`nothex`"),
        (vec![scoped("none", "x", &[])], "`none`: `collections` is empty"),
    ];
    for (keys, expected) in cases {
        let err = KeySet::new(&keys).unwrap_err();
        assert!(err.contains(expected), "{err:?} should contain {expected:?}");
    }
}

#[test]
fn roles_are_ordered_and_parse() {
    assert!(KeyRole::Read < KeyRole::Write && KeyRole::Write < KeyRole::Admin);
    for role in [KeyRole::Read, KeyRole::Write, KeyRole::Admin] {
        assert_eq!(role.as_str().parse::<KeyRole>().unwrap(), role);
    }
    assert!("root".parse::<KeyRole>().unwrap_err().contains("unknown role `root`"));
}

#[test]
fn new_tokens_are_random_and_their_entry_configures_them() {
    let a = new_token().unwrap();
    assert!(a.starts_with("strata_") && a.len() == "strata_".len() + 43, "{a}");
    assert_ne!(a, new_token().unwrap());
    let (token, entry) = new_key_entry("ci", KeyRole::Write, Some(vec!["docs".into()])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, entry).unwrap();
    let set = KeySet::new(&keys::read_keys_file(&path).unwrap()).unwrap();
    let found = set.find(&token).unwrap();
    assert_eq!(found.role, KeyRole::Write);
    assert!(found.access.allows("docs") && !found.access.allows("other"));
}

#[test]
fn a_missing_or_malformed_keys_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = AuthConfig { keys_file: Some(dir.path().join("nope.toml")), ..AuthConfig::default() };
    assert!(Auth::new(&missing, None).err().unwrap().contains("cannot read keys file"));
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[keys]]\nname = \"a\"\nrole = \"root\"\n").unwrap();
    let bad = AuthConfig { keys_file: Some(path), ..AuthConfig::default() };
    assert!(Auth::new(&bad, None).err().unwrap().contains("invalid keys file"));
}

#[test]
fn route_roles_deny_by_default() {
    use routes::role_needed;
    assert_eq!(role_needed(&Method::POST, Some("/v1/collections/{name}/search")), Some(KeyRole::Read));
    assert_eq!(role_needed(&Method::HEAD, Some("/v1/collections/{name}")), Some(KeyRole::Read));
    assert_eq!(role_needed(&Method::POST, Some("/v1/collections/{name}/upsert")), Some(KeyRole::Write));
    assert_eq!(role_needed(&Method::DELETE, Some("/v1/collections/{name}")), Some(KeyRole::Admin));
    assert_eq!(role_needed(&Method::PUT, Some("/v1/collections/{name}/search")), Some(KeyRole::Admin));
    assert_eq!(role_needed(&Method::GET, Some("/v1/some/new/route")), Some(KeyRole::Admin));
    assert_eq!(role_needed(&Method::GET, None), None);
    assert_eq!(routes::collection_in_path("/v1/collections/docs/search"), Some("docs"));
    assert_eq!(routes::collection_in_path("/v1/collections/docs"), Some("docs"));
    assert_eq!(routes::collection_in_path("/v1/collections"), None);
    assert_eq!(routes::collection_in_path("/v1/collections/"), None);
}

/// Every operation in the OpenAPI document has a line in the route table, so no route is
/// admin-only by accident (or open by a stale line). The other direction, every line
/// naming a route the node serves, is checked against a real process in `tests/`.
#[test]
fn every_documented_operation_has_a_role() {
    let doc = serde_json::to_value(crate::http::openapi_document()).unwrap();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            documented += 1;
            let upper = method.to_uppercase();
            assert!(
                routes::ROUTES.iter().any(|(m, t, _)| *m == upper && t == path),
                "{upper} {path} is documented but has no line in auth::routes::ROUTES"
            );
        }
    }
    assert!(documented >= 20, "only {documented} operations documented");
}

/// A stand-in for the node's router: the same templates, handlers that say what they saw.
fn app(auth: Auth) -> Router {
    let list = |access: Option<axum::Extension<strata_api::Access>>| async move {
        let all = ["docs", "logs"];
        let seen: Vec<_> = all.iter().filter(|c| strata_api::Access::may_see(access.as_deref(), c)).collect();
        axum::Json(seen).into_response()
    };
    Router::new()
        .route("/v1/collections", get(list).post(|body: String| async move { body }))
        .route("/v1/collections/{name}/search", post(|| async { "hits" }))
        .route("/v1/collections/{name}/upsert", post(|| async { "written" }))
        .route("/v1/collections/{name}", axum::routing::delete(|| async { "dropped" }))
        .route("/v1/cluster/nodes", get(|| async { "nodes" }))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no route") })
        .layer(axum::middleware::from_fn_with_state(auth, authorize))
}

async fn call(app: &Router, method: &str, path: &str, token: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"strata\"");
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn four_keys() -> Auth {
    Auth::new(
        &keys_config(vec![
            key("reader", KeyRole::Read, "r"),
            key("writer", KeyRole::Write, "w"),
            key("admin", KeyRole::Admin, "a"),
            scoped("docs-writer", "s", &["docs"]),
        ]),
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn requests_need_a_known_key_whose_role_reaches_the_route() {
    let app = app(four_keys());
    let (status, body) = call(&app, "POST", "/v1/collections/docs/search", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"unauthenticated\"") && body.contains("missing API key"), "{body}");
    let (status, body) = call(&app, "POST", "/v1/collections/docs/search", Some("nope"), "").await;
    assert_eq!((status, body.contains("unknown API key")), (StatusCode::UNAUTHORIZED, true), "{body}");

    // (method, path, lowest role allowed)
    let table = [
        ("POST", "/v1/collections/docs/search", KeyRole::Read),
        ("POST", "/v1/collections/docs/upsert", KeyRole::Write),
        ("DELETE", "/v1/collections/docs", KeyRole::Admin),
        ("POST", "/v1/collections", KeyRole::Admin),
        ("GET", "/v1/cluster/nodes", KeyRole::Admin),
    ];
    for (method, path, lowest) in table {
        for (token, role) in [("r", KeyRole::Read), ("w", KeyRole::Write), ("a", KeyRole::Admin)] {
            let (status, body) = call(&app, method, path, Some(token), "{\"name\":\"x\"}").await;
            if role >= lowest {
                assert_eq!(status, StatusCode::OK, "{method} {path} with {role:?}: {body}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with {role:?}: {body}");
                assert!(body.contains("permission_denied") && body.contains(lowest.as_str()), "{body}");
            }
        }
    }
    // Public paths need no key; a path no route serves needs one, and then is a 404.
    assert_eq!(call(&app, "GET", "/healthz", None, "").await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/nowhere", None, "").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/nowhere", Some("r"), "").await.0, StatusCode::NOT_FOUND);
    // Lowercase scheme and extra spaces are fine; another scheme is not a bearer token.
    let request = Request::get("/v1/cluster/nodes").header(header::AUTHORIZATION, "bearer   a ");
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request = Request::get("/v1/cluster/nodes").header(header::AUTHORIZATION, "Basic a");
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_limited_to_collections_touches_only_those() {
    let app = app(four_keys());
    assert_eq!(call(&app, "POST", "/v1/collections/docs/upsert", Some("s"), "").await.0, StatusCode::OK);
    let (status, body) = call(&app, "POST", "/v1/collections/logs/upsert", Some("s"), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("may not use collection `logs`"), "{body}");
    let (status, body) = call(&app, "GET", "/v1/cluster/nodes", Some("s"), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Listing shows it only its own collections; an unlimited key sees all.
    assert_eq!(call(&app, "GET", "/v1/collections", Some("s"), "").await.1, "[\"docs\"]");
    assert_eq!(call(&app, "GET", "/v1/collections", Some("r"), "").await.1, "[\"docs\",\"logs\"]");
    // Escaped names are compared as sent: never let through to another collection.
    assert_eq!(call(&app, "POST", "/v1/collections/d%6Fcs/upsert", Some("s"), "").await.0, StatusCode::FORBIDDEN);

    let scoped_admin = Auth::new(
        &keys_config(vec![KeyConfig { role: KeyRole::Admin, ..scoped("docs-admin", "sa", &["docs"]) }]),
        None,
    )
    .unwrap();
    let app = self::app(scoped_admin);
    let create = "{\"name\":\"docs\",\"dimension\":4}";
    let (status, body) = call(&app, "POST", "/v1/collections", Some("sa"), create).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, create), "the body reaches the handler intact");
    let (status, body) = call(&app, "POST", "/v1/collections", Some("sa"), "{\"name\":\"logs\"}").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("may not create collection `logs`"), "{body}");
    assert_eq!(call(&app, "DELETE", "/v1/collections/logs", Some("sa"), "").await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "DELETE", "/v1/collections/docs", Some("sa"), "").await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_keys_everything_is_open() {
    let app = app(Auth::new(&AuthConfig::default(), None).unwrap());
    for (method, path) in
        [("DELETE", "/v1/collections/docs"), ("GET", "/v1/cluster/nodes"), ("POST", "/v1/collections")]
    {
        assert_eq!(call(&app, method, path, None, "").await.0, StatusCode::OK, "{method} {path}");
    }
    assert_eq!(call(&app, "GET", "/v1/collections", None, "").await.1, "[\"docs\",\"logs\"]");
}

#[tokio::test]
async fn reloads_swap_keys_and_never_turn_checking_off() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let config_file = dir.path().join("strata.toml");
    let entry = |name: &str, token: &str| {
        format!("[[keys]]\nname = \"{name}\"\nrole = \"admin\"\nsha256 = \"{}\"\n", hash_hex(token))
    };
    std::fs::write(&keys_file, entry("first", "one")).unwrap();
    let config = format!("[auth]\nkeys_file = {:?}\n", keys_file.display().to_string());
    std::fs::write(&config_file, &config).unwrap();
    let loaded = crate::config::Config::load(Some(&config_file)).unwrap();
    let auth = Auth::new(&loaded.auth, Some(config_file.clone())).unwrap();
    assert!(auth.watchable());
    let app = app(auth.clone());
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("one"), "").await.0, StatusCode::OK);

    std::fs::write(&keys_file, entry("second", "two")).unwrap();
    assert_eq!(auth.reload("test"), Ok(1));
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("one"), "").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("two"), "").await.0, StatusCode::OK);

    // A broken file keeps the keys in force.
    std::fs::write(&keys_file, "[[keys]]\nname = ").unwrap();
    assert!(auth.reload("test").unwrap_err().contains("invalid keys file"));
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("two"), "").await.0, StatusCode::OK);

    // Removing every key from the configuration admits nobody rather than everybody.
    std::fs::write(&config_file, "").unwrap();
    assert_eq!(auth.reload("test"), Ok(0));
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", None, "").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("two"), "").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_watcher_reloads_when_the_keys_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, "").unwrap();
    let auth = Auth::new(&AuthConfig { keys_file: Some(keys_file.clone()), ..AuthConfig::default() }, None).unwrap();
    let clock = Arc::new(strata_types::time::ManualClock::new(0));
    let (stop, shutdown) = watch::channel(false);
    let watcher = tokio::spawn(auth.clone().watch(clock.clone(), shutdown));
    let app = app(auth);
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("new"), "").await.0, StatusCode::UNAUTHORIZED);
    // The watcher has noted the file as it was once it waits for the clock.
    while clock.sleepers() == 0 {
        tokio::task::yield_now().await;
    }

    let entry = format!("[[keys]]\nname = \"new\"\nrole = \"admin\"\nsha256 = \"{}\"\n", hash_hex("new"));
    std::fs::write(&keys_file, entry).unwrap();
    // Nothing changes until the clock reaches the next check.
    assert_eq!(call(&app, "GET", "/v1/cluster/nodes", Some("new"), "").await.0, StatusCode::UNAUTHORIZED);
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..200 {
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(crate::watch::WATCH_EVERY);
        tokio::task::yield_now().await;
        status = call(&app, "GET", "/v1/cluster/nodes", Some("new"), "").await.0;
        if status == StatusCode::OK {
            break;
        }
    }
    assert_eq!(status, StatusCode::OK, "the watcher picked up the new key");
    stop.send(true).unwrap();
    watcher.await.unwrap();
}

#[test]
fn an_open_api_beyond_loopback_needs_keys_or_insecure() {
    let open = AuthConfig::default();
    let with_keys = keys_config(vec![key("a", KeyRole::Admin, "a")]);
    let loopback = "127.0.0.1:7700".parse().unwrap();
    let everywhere = "0.0.0.0:7700".parse().unwrap();
    assert!(check_exposure(loopback, &open, false).is_ok());
    assert!(check_exposure("[::1]:7700".parse().unwrap(), &open, false).is_ok());
    let err = check_exposure(everywhere, &open, false).unwrap_err();
    assert!(err.contains("0.0.0.0:7700") && err.contains("--insecure") && err.contains("strata keys new"), "{err}");
    assert!(check_exposure(everywhere, &open, true).is_ok());
    assert!(check_exposure(everywhere, &with_keys, false).is_ok());
}
