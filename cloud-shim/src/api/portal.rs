//! Serves the built operators' portal (`portal/dist`) at `/`: static files with their content types, and
//! `index.html` for any other non-API path so the single-page app's own routes survive a reload. The
//! shell needs no token; every piece of data it shows comes from the bearer-protected API.
//!
//! Paths are decoded and rebuilt from plain components only (no `..`, no `.`, no backslashes, no NUL), and
//! the file found must still lie under the canonical portal directory, so neither a crafted path nor a
//! symbolic link reaches a file outside it.

use std::path::{Component, Path, PathBuf};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::AppState;

/// Policy for the portal's HTML: only its own scripts, no framing. Connections and images may go to other
/// origins because the API base URL is configurable and artifact links can be absolute (`--public-url`).
/// Inline style attributes stay allowed: the chart library positions its elements with them.
const SHELL_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'; object-src 'none'";

/// Paths that belong to the API: never answered with the portal shell, so a mistyped API URL still gets a
/// JSON 404 instead of HTML.
fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/") || path == "/healthz"
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// `%XX` decoding of a URL path; `None` for malformed escapes or non-UTF-8 results.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// What a request path maps to under the portal directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A relative path made only of normal components (may not exist).
    File(PathBuf),
    /// `/` itself.
    Index,
    /// A path that tries to leave the directory or is malformed: refused outright.
    Refused,
}

/// Maps a URL path to a relative file path, refusing anything but plain names.
pub fn resolve(url_path: &str) -> Target {
    let Some(decoded) = percent_decode(url_path) else { return Target::Refused };
    if decoded.contains(['\\', '\0']) {
        return Target::Refused;
    }
    let mut rel = PathBuf::new();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        // Only a single normal component per segment: this refuses "..", "." and anything the platform
        // would read as a root or prefix.
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) if !seg.starts_with('.') => rel.push(c),
            _ => return Target::Refused,
        }
    }
    if rel.as_os_str().is_empty() {
        Target::Index
    } else {
        Target::File(rel)
    }
}

/// A regular file under `root` (after resolving symbolic links), or `None`.
async fn file_under(root: &Path, rel: &Path) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let full = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    if !full.starts_with(&root) {
        return None;
    }
    tokio::fs::metadata(&full).await.ok().filter(|m| m.is_file()).map(|_| full)
}

async fn send_file(path: &Path) -> Response {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            // Vite puts content-hashed names under assets/: cache them for good; the shell always revalidates.
            let immutable = path.parent().and_then(Path::file_name).is_some_and(|d| d == "assets");
            let cache = if immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
            let mut resp = (StatusCode::OK, bytes).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            if content_type(path).starts_with("text/html") {
                h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SHELL_CSP));
            }
            resp
        }
        Err(e) => {
            log::warn!("portal: reading {}: {e}", path.display());
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "portal file unreadable").into_response()
        }
    }
}

/// The router's fallback: the portal for GET/HEAD outside the API, a JSON 404 for everything else.
pub async fn fallback(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    let not_found = || ApiError::not_found("no such endpoint").into_response();
    let Some(root) = state.config.portal_dir.as_deref() else { return not_found() };
    if is_api_path(uri.path()) || !(method == Method::GET || method == Method::HEAD) {
        return not_found();
    }
    let index = root.join("index.html");
    match resolve(uri.path()) {
        Target::Refused => not_found(),
        Target::Index => send_file(&index).await,
        Target::File(rel) => match file_under(root, &rel).await {
            Some(path) => send_file(&path).await,
            // A missing asset is a 404, so a broken build shows up as such; any other path is a route of
            // the single-page app.
            None if rel.starts_with("assets") || rel.extension().is_some() => not_found(),
            None => send_file(&index).await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_plain_paths_only() {
        assert_eq!(resolve("/"), Target::Index);
        assert_eq!(resolve("/assets/index-abc.js"), Target::File(PathBuf::from("assets/index-abc.js")));
        assert_eq!(resolve("/gateways/gw-1"), Target::File(PathBuf::from("gateways/gw-1")));
        for bad in [
            "/../etc/passwd",
            "/assets/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%5c..%5cetc",
            "/a\\b",
            "/./index.html",
            "/.env",
            "/%00",
            "/%zz",
            "/%ff%fe",
        ] {
            assert_eq!(resolve(bad), Target::Refused, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("assets/a.JS")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("assets/a.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
    }

    #[test]
    fn api_paths_are_not_portal_routes() {
        assert!(is_api_path("/v1/sensors"));
        assert!(is_api_path("/healthz"));
        assert!(!is_api_path("/v1x"));
        assert!(!is_api_path("/gateways/gw-1"));
    }
}
