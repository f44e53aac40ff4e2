//! API keys at the REST edge: who may call what.
//!
//! Flow of a request, in [`authorize`] (a layer over every route, the fallbacks included):
//! 1. With no keys configured (the standalone default on loopback) everything is allowed.
//! 2. A path in `auth.public_paths` (health, readiness, metrics, the OpenAPI document and
//!    the admin page's HTML by default) is answered without a key.
//! 3. Otherwise the request must carry `Authorization: Bearer <token>` whose SHA-256 is a
//!    configured key: else 401 (`unauthenticated`, with `WWW-Authenticate`).
//! 4. The key's role must reach the route's ([`routes::ROUTES`]: read < write < admin),
//!    and a key limited to collections must name the request's collection (in the path,
//!    or the body of a create) and may not use `/v1/cluster/*`: else 403
//!    (`permission_denied`, naming the key, the role or collection and what was needed).
//! 5. The request goes on with the key's [`strata_api::Access`] as an extension (listing collections
//!    shows a limited key only its own).
//!
//! Mutating admin requests (create/drop, drain/undrain/remove/rebalance) and key reloads
//! are logged on the `strata::audit` target: who (key name, or `anonymous` without keys),
//! what (method, path, status) and when (the log line's time).
//!
//! Keys come from `auth.keys` (config file or `STRATA__AUTH__KEYS`) and `auth.keys_file`;
//! both are re-read on SIGHUP and when either file changes ([`Auth::watch`]). A reload
//! that fails keeps the keys in force and says why; once a node checks keys, no reload
//! turns checking off.
//!
//! Invariant: a node listening beyond loopback without keys refuses to start unless told
//! `--insecure` ([`check_exposure`]).

mod keys;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keys::{Key, KeySet};
pub use keys::{KeyConfig, KeyRole, hash_hex, new_key_entry};
pub use routes::ROUTES;
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, BodyLimit};
use strata_types::time::Clock;
use tokio::sync::watch;

/// `[auth]`: API keys. Without any, every request is allowed (fine on loopback only; see
/// [`check_exposure`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Keys as `[[auth.keys]]` tables: `name`, `role` (read, write, admin), `sha256` (of
    /// the token) and optionally `collections`. Default: none.
    pub keys: Vec<KeyConfig>,
    /// A TOML file of more keys (`[[keys]]` tables), re-read when it changes and on
    /// SIGHUP: mount a Kubernetes Secret here. Default: none.
    pub keys_file: Option<PathBuf>,
    /// Paths answered without a key. Default: `/healthz`, `/readyz`, `/metrics`,
    /// `/openapi.json`, `/ui` (the admin page's HTML; the data it shows needs a key).
    pub public_paths: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let public = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/ui"];
        Self { keys: Vec::new(), keys_file: None, public_paths: public.map(str::to_owned).to_vec() }
    }
}

impl AuthConfig {
    /// Whether keys are configured at all (an empty keys file counts: it admits nobody).
    pub fn checks_keys(&self) -> bool {
        !self.keys.is_empty() || self.keys_file.is_some()
    }

    /// Every configured key: `keys`, then the keys file's.
    fn load(&self) -> Result<KeySet, String> {
        let mut all = self.keys.clone();
        if let Some(path) = &self.keys_file {
            all.extend(keys::read_keys_file(path)?);
        }
        KeySet::new(&all)
    }
}

/// Refuses to serve an open API beyond loopback: `listen` not on loopback, no keys and
/// not `insecure` is an error that says what to do.
pub fn check_exposure(listen: SocketAddr, auth: &AuthConfig, insecure: bool) -> Result<(), String> {
    if listen.ip().is_loopback() || auth.checks_keys() {
        return Ok(());
    }
    if insecure {
        tracing::warn!(%listen, "serving the API without API keys beyond loopback (--insecure): anyone who can reach it can read, change and drop every collection");
        return Ok(());
    }
    Err(format!(
        "refusing to serve the API on {listen} without API keys: anyone who could reach it could read, \
         overwrite and drop every collection. Configure keys (`strata keys new --name NAME --role admin`, \
         see docs/security.md), listen on 127.0.0.1, or, on a network you trust, pass --insecure"
    ))
}

/// The keys a node checks, reloadable while it runs.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    /// What a request is checked against, swapped whole on reload.
    state: RwLock<Arc<KeyState>>,
    /// A handful of paths: a linear scan beats hashing the request path.
    public: Vec<String>,
    /// Where `auth` came from, to re-read on reload (`None`: it cannot change).
    config_file: Option<PathBuf>,
}

/// The keys in force and the configuration they came from.
struct KeyState {
    keys: KeySet,
    /// Whether keys are checked at all; set for good once any are configured.
    checks: bool,
    /// For reloads without a config file, and for the keys file's path.
    config: AuthConfig,
}

impl Auth {
    /// Loads the keys of `config`, which was read from `config_file` (if any).
    pub fn new(config: &AuthConfig, config_file: Option<PathBuf>) -> Result<Auth, String> {
        let state = KeyState { keys: config.load()?, checks: config.checks_keys(), config: config.clone() };
        Ok(Auth {
            inner: Arc::new(Inner {
                state: RwLock::new(Arc::new(state)),
                public: config.public_paths.clone(),
                config_file,
            }),
        })
    }

    fn state(&self) -> Arc<KeyState> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the keys (the config file's `auth` section, then the keys file). On
    /// failure the keys in force stay, and the error says why.
    pub fn reload(&self, why: &str) -> Result<usize, String> {
        let loaded = match &self.inner.config_file {
            Some(path) => crate::config::Config::load(Some(path)).map(|c| c.auth).map_err(|e| e.to_string()),
            None => Ok(self.state().config.clone()),
        }
        .and_then(|config| Ok((config.load()?, config)));
        let (keys, config) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(target: "strata::audit", reason = why, error = %e, "API keys not reloaded; the previous keys stay in force");
                return Err(e);
            }
        };
        let count = keys.len();
        let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
        let checks = state.checks || config.checks_keys();
        *state = Arc::new(KeyState { keys, checks, config });
        drop(state);
        tracing::info!(target: "strata::audit", reason = why, keys = count, "API keys reloaded");
        Ok(count)
    }

    /// Reloads on SIGHUP and whenever the config file or keys file changes (checked
    /// every [`crate::watch::WATCH_EVERY`]), until `shutdown`.
    pub async fn watch(self, clock: Arc<dyn Clock>, shutdown: watch::Receiver<bool>) {
        let reload = |why| {
            let _ = self.reload(why);
        };
        crate::watch::reload_on_change(clock, shutdown, || self.file_times(), reload).await;
    }

    /// Modification times (and sizes) of the files keys come from.
    fn file_times(&self) -> Vec<crate::watch::Stamp> {
        let keys_file = self.state().config.keys_file.clone();
        [self.inner.config_file.clone(), keys_file].into_iter().flatten().map(|p| crate::watch::stamp(&p)).collect()
    }

    /// Whether anything can change the keys while the node runs.
    pub fn watchable(&self) -> bool {
        !self.file_times().is_empty()
    }
}

/// The authentication and authorisation layer (see the module docs for the steps).
pub async fn authorize(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    // A `MatchedPath` clone is a reference count, not a copy.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let template = matched.as_ref().map(MatchedPath::as_str);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let needed = routes::role_needed(&method, template);
    let audited = needed == Some(KeyRole::Admin) && !matches!(method, Method::GET | Method::HEAD);
    let state = auth.state();
    if !state.checks {
        let response = next.run(req).await;
        if audited {
            audit("anonymous", &method, &path, response.status());
        }
        return response;
    }
    if auth.inner.public.contains(&path) {
        return next.run(req).await;
    }
    let key = match bearer_token(&req).map(|token| state.keys.find(token).cloned()) {
        None => return unauthenticated("missing API key: send `Authorization: Bearer <key>`"),
        Some(None) => return unauthenticated("unknown API key"),
        Some(Some(key)) => key,
    };
    let refused = match check(&key, needed, template, &path) {
        Err(message) => Some(message),
        Ok(()) if key.access.collections.is_some() && method == Method::POST && path == "/v1/collections" => {
            let (checked, refusal) = check_created_name(&key, req).await;
            req = checked;
            refusal
        }
        Ok(()) => None,
    };
    if let Some(message) = refused {
        let response = ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message).into_response();
        if needed == Some(KeyRole::Admin) {
            audit(&key.access.key_name, &method, &path, response.status());
        }
        return response;
    }
    req.extensions_mut().insert(key.access.clone());
    let response = next.run(req).await;
    if audited {
        audit(&key.access.key_name, &method, &path, response.status());
    }
    response
}

/// Whether `key` may call the route: its role, and for a key limited to collections, the
/// collection in the path and no cluster admin.
fn check(key: &Key, needed: Option<KeyRole>, template: Option<&str>, path: &str) -> Result<(), String> {
    let name = &key.access.key_name;
    if let Some(needed) = needed
        && key.role < needed
    {
        return Err(format!(
            "API key `{name}` has role {}; {} needs role {}",
            key.role.as_str(),
            template.unwrap_or(path),
            needed.as_str()
        ));
    }
    if key.access.collections.is_none() {
        return Ok(());
    }
    if template.is_some_and(|t| t.starts_with("/v1/cluster")) {
        return Err(format!(
            "API key `{name}` is limited to some collections; the cluster admin API needs a key for every collection"
        ));
    }
    match routes::collection_in_path(path) {
        Some(collection) if !key.access.allows(collection) => {
            Err(format!("API key `{name}` may not use collection `{collection}`"))
        }
        _ => Ok(()),
    }
}

/// A key limited to collections may create only those: reads the create request's body
/// (small; bounded by the body limit) for its `name`. A body that does not parse goes on
/// to the handler, which refuses it the same way.
async fn check_created_name(key: &Key, req: Request) -> (Request, Option<String>) {
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let limit = req.extensions().get::<BodyLimit>().map_or(1 << 20, |l| l.0);
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let req = Request::from_parts(parts, Body::empty());
        return (req, Some("cannot read the request body".to_owned()));
    };
    let refusal = match serde_json::from_slice::<Named>(&bytes) {
        Ok(Named { name }) if !key.access.allows(&name) => {
            Some(format!("API key `{}` may not create collection `{name}`", key.access.key_name))
        }
        _ => None,
    };
    (Request::from_parts(parts, Body::from(bytes)), refusal)
}

fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"strata\""));
    response
}

/// One audit line: who did what, and how it ended.
fn audit(who: &str, method: &Method, path: &str, status: StatusCode) {
    tracing::info!(target: "strata::audit", key = who, %method, path, status = status.as_u16(), "admin request");
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
