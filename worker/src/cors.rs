//! CORS for the operators' portal on another origin (Cloudflare Pages). The allowed origins come from
//! the `CORS_ORIGINS` variable: a comma-separated list of exact origins, or `*`. Empty: no CORS headers,
//! so browsers on other origins are refused (the default for an API holding bearer tokens).

/// Methods and headers the portal uses.
pub const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-SCS-User, Idempotency-Key";
pub const EXPOSE_HEADERS: &str = "X-Next-Cursor, Link, Content-Range, Accept-Ranges";
/// How long a browser may cache a preflight answer (seconds).
pub const MAX_AGE: &str = "600";

/// The `Access-Control-Allow-Origin` value for a request from `origin`, if that origin is allowed.
pub fn allow_origin(config: &str, origin: Option<&str>) -> Option<String> {
    let origin = origin?.trim();
    if origin.is_empty() {
        return None;
    }
    for allowed in config.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if allowed == "*" {
            return Some("*".to_owned());
        }
        if allowed.eq_ignore_ascii_case(origin) {
            return Some(origin.to_owned());
        }
    }
    None
}

/// Headers to add to every answer for an allowed origin; `preflight` adds the ones an OPTIONS
/// preflight needs.
pub fn headers(allowed_origin: &str, preflight: bool) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Access-Control-Allow-Origin", allowed_origin.to_owned()),
        ("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_owned()),
        ("Vary", "Origin".to_owned()),
    ];
    if preflight {
        h.push(("Access-Control-Allow-Methods", ALLOW_METHODS.to_owned()));
        h.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.to_owned()));
        h.push(("Access-Control-Max-Age", MAX_AGE.to_owned()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_origins_are_allowed() {
        let cfg = "https://portal.example, https://staging.portal.example";
        assert_eq!(allow_origin(cfg, Some("https://portal.example")).as_deref(), Some("https://portal.example"));
        assert_eq!(allow_origin(cfg, Some("https://evil.example")), None);
        assert_eq!(allow_origin(cfg, None), None);
        assert_eq!(allow_origin("", Some("https://portal.example")), None);
        assert_eq!(allow_origin("*", Some("https://any.example")).as_deref(), Some("*"));
        assert!(headers("*", true).iter().any(|(k, _)| *k == "Access-Control-Allow-Headers"));
        assert!(!headers("*", false).iter().any(|(k, _)| *k == "Access-Control-Allow-Methods"));
    }
}
