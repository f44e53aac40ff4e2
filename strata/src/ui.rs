//! The admin page (`GET /ui`): one self-contained HTML document (inline CSS and JS, no
//! external assets) that polls this node's REST API every 2 s and shows the cluster
//! topology, the shard → node assignment, per-shard statistics of every collection, this
//! node's cache and a "recent activity" list derived client-side from successive polls.
//!
//! It is mounted only on processes that run the query role (query nodes and standalone),
//! since it reads `/v1/collections`, which only they serve. See `docs/ui.md`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("ui/index.html");

/// `GET /ui`.
pub fn router() -> Router {
    Router::new().route("/ui", get(page))
}

/// The admin page: one self-contained HTML document that polls this node's REST API.
#[utoipa::path(get, path = "/ui", tag = "node",
    responses((status = 200, description = "the page (inline CSS and JS)", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Self-contained: inline style and script, requests to this node only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
}
