//! Which handler serves a request: a pure function of method and path, so routing is tested on the host.
//! Route families of other modules (command sessions, artifacts) add their variants here.

pub use crate::method::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (health).
    Public,
    /// An API token whose scope covers the method.
    Token,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Ingest,
    Sensors,
    Sensor(String),
    SensorMetrics(String),
    SensorEvents(String),
    Fleet,
    GatewayDevices(String),
    GatewayStats(String),
    GatewayEvents(String),
    Stats,
    /// The command routes (`crate::sessions`).
    Sessions(crate::sessions::SessionRoute),
    /// The artifact routes (`crate::artifacts`).
    Artifacts(crate::artifacts::ArtifactRoute),
    /// The release routes (`crate::releases`).
    Releases(crate::releases::ReleaseRoute),
    /// Known path, other method.
    MethodNotAllowed(&'static str),
    NotFound,
}

impl Route {
    pub fn access(&self) -> Access {
        match self {
            Route::Healthz | Route::MethodNotAllowed(_) | Route::NotFound => Access::Public,
            // Its URL carries its own token.
            Route::Releases(r) if !r.needs_api_token() => Access::Public,
            // Uploads check the gateway's credentials and grant, downloads the signed URL, themselves.
            Route::Artifacts(a) if !a.needs_api_token() => Access::Public,
            _ => Access::Token,
        }
    }
}

/// Decodes one path segment (`%2F` and friends); ids never contain `/`, so a decoded one is refused later.
fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hi = it.next().and_then(|c| (*c as char).to_digit(16))?;
            let lo = it.next().and_then(|c| (*c as char).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

pub fn route(method: Method, path: &str) -> Route {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = |r: Route| if matches!(method, Method::Get | Method::Head) { r } else { Route::MethodNotAllowed("GET") };
    let id = |s: &str| decode_segment(s);
    if let Some(r) = crate::sessions::route(method, path) {
        return r.map_or_else(Route::MethodNotAllowed, Route::Sessions);
    }
    if let Some(r) = crate::artifacts::route(method, path) {
        return r.map_or_else(Route::MethodNotAllowed, Route::Artifacts);
    }
    if let Some(r) = crate::releases::route(method, path) {
        return r.map_or_else(Route::MethodNotAllowed, Route::Releases);
    }
    match segs.as_slice() {
        ["healthz"] => get(Route::Healthz),
        ["v1", "ingest"] => {
            if method == Method::Post {
                Route::Ingest
            } else {
                Route::MethodNotAllowed("POST")
            }
        }
        ["v1", "sensors"] => get(Route::Sensors),
        ["v1", "sensors", s] => id(s).map_or(Route::NotFound, |s| get(Route::Sensor(s))),
        ["v1", "sensors", s, "metrics"] => id(s).map_or(Route::NotFound, |s| get(Route::SensorMetrics(s))),
        ["v1", "sensors", s, "events"] => id(s).map_or(Route::NotFound, |s| get(Route::SensorEvents(s))),
        ["v1", "fleet"] => get(Route::Fleet),
        ["v1", "gateways", g, "devices"] => id(g).map_or(Route::NotFound, |g| get(Route::GatewayDevices(g))),
        ["v1", "gateways", g, "stats"] => id(g).map_or(Route::NotFound, |g| get(Route::GatewayStats(g))),
        ["v1", "gateways", g, "events"] => id(g).map_or(Route::NotFound, |g| get(Route::GatewayEvents(g))),
        ["v1", "stats"] => get(Route::Stats),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(route(Method::Get, "/healthz"), Route::Healthz);
        assert_eq!(route(Method::Post, "/v1/ingest"), Route::Ingest);
        assert_eq!(route(Method::Get, "/v1/ingest"), Route::MethodNotAllowed("POST"));
        assert_eq!(route(Method::Get, "/v1/sensors/"), Route::Sensors);
        assert_eq!(route(Method::Get, "/v1/sensors/gw%2D1"), Route::Sensor("gw-1".into()));
        assert_eq!(route(Method::Get, "/v1/sensors/gw-1/metrics"), Route::SensorMetrics("gw-1".into()));
        assert_eq!(route(Method::Post, "/v1/sensors"), Route::MethodNotAllowed("GET"));
        assert_eq!(route(Method::Get, "/v1/gateways/gw-1/devices"), Route::GatewayDevices("gw-1".into()));
        assert_eq!(route(Method::Get, "/v1/sensors/cam-1/events"), Route::SensorEvents("cam-1".into()));
        assert_eq!(route(Method::Get, "/v1/gateways/gw-1/events"), Route::GatewayEvents("gw-1".into()));
        assert_eq!(route(Method::Post, "/v1/gateways/gw-1/events"), Route::MethodNotAllowed("GET"));
        assert_eq!(route(Method::Get, "/v1/fleet"), Route::Fleet);
        assert_eq!(route(Method::Get, "/v1/releases"), Route::Releases(crate::releases::ReleaseRoute::List));
        assert_eq!(
            route(Method::Post, "/v1/gateways/gw-1/releases/1.2.0/offer"),
            Route::Releases(crate::releases::ReleaseRoute::Offer("gw-1".into(), "1.2.0".into()))
        );
        assert_eq!(route(Method::Get, "/v1/releases/r-1/download").access(), Access::Public);
        assert_eq!(route(Method::Get, "/v1/releases").access(), Access::Token);
        assert_eq!(route(Method::Get, "/v1/nope"), Route::NotFound);
        assert_eq!(route(Method::Get, "/v1/sensors/%zz"), Route::NotFound);
        assert_eq!(Route::Healthz.access(), Access::Public);
        assert_eq!(Route::Ingest.access(), Access::Token);
    }
}
