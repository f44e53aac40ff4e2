//! Which key role each route needs, by method and route template.
//!
//! Deny by default: a route missing from [`ROUTES`] needs `admin`, so a route added
//! without a line here is never open to a reader by accident (the tests check that every
//! documented operation has a line).

use axum::http::Method;

use super::keys::KeyRole;

/// (method, route template, role needed). `HEAD` is checked as `GET`.
pub const ROUTES: &[(&str, &str, KeyRole)] = &[
    ("GET", "/v1/collections", KeyRole::Read),
    ("GET", "/v1/collections/{name}", KeyRole::Read),
    ("POST", "/v1/collections/{name}/search", KeyRole::Read),
    ("POST", "/v1/collections/{name}/get", KeyRole::Read),
    ("POST", "/v1/collections/{name}/scan", KeyRole::Read),
    ("POST", "/v1/collections/{name}/query", KeyRole::Read),
    ("POST", "/v1/collections/{name}/count", KeyRole::Read),
    ("GET", "/v1/node", KeyRole::Read),
    ("POST", "/v1/collections/{name}/upsert", KeyRole::Write),
    ("POST", "/v1/collections/{name}/delete", KeyRole::Write),
    ("POST", "/v1/collections/{name}/update", KeyRole::Write),
    ("POST", "/v1/collections/{name}/flush", KeyRole::Write),
    ("POST", "/v1/collections/{name}/bulk", KeyRole::Write),
    ("POST", "/v1/collections", KeyRole::Admin),
    ("DELETE", "/v1/collections/{name}", KeyRole::Admin),
    ("GET", "/v1/cluster/nodes", KeyRole::Admin),
    ("GET", "/v1/cluster/nodes/{id}", KeyRole::Admin),
    ("DELETE", "/v1/cluster/nodes/{id}", KeyRole::Admin),
    ("POST", "/v1/cluster/nodes/{id}/drain", KeyRole::Admin),
    ("DELETE", "/v1/cluster/nodes/{id}/drain", KeyRole::Admin),
    ("GET", "/v1/cluster/shards", KeyRole::Admin),
    ("POST", "/v1/cluster/rebalance", KeyRole::Admin),
    // Answered with any key, whatever its role; open without one only when listed in
    // `auth.public_paths` (the default list has them all).
    ("GET", "/healthz", KeyRole::Read),
    ("GET", "/readyz", KeyRole::Read),
    ("GET", "/metrics", KeyRole::Read),
    ("GET", "/openapi.json", KeyRole::Read),
    ("GET", "/ui", KeyRole::Read),
];

/// The role `method` on route `template` needs; `None` for a path no route matched (any
/// valid key may learn that it does not exist).
pub(crate) fn role_needed(method: &Method, template: Option<&str>) -> Option<KeyRole> {
    let template = template?;
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    Some(ROUTES.iter().find(|(m, t, _)| *m == method && *t == template).map_or(KeyRole::Admin, |&(_, _, role)| role))
}

/// The collection a request path names (`/v1/collections/{name}…`), as sent.
///
/// Percent-escapes are not decoded: a scoped key is compared with the raw segment, so an
/// escaped name can only be refused, never let through to another collection.
pub(crate) fn collection_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/collections/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}
