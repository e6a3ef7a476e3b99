//! Command sessions on Cloudflare: the shim's command API and semantics (`cloud-shim/src/commands/`) with
//! a Durable Object per gateway as the single owner of its commands' delivery, D1 as the store (same
//! schema, same audit trail) and a long-poll downlink to the shims that bridge MQTT.
//!
//! Pure, host-tested: `api` (request rules, JSON views), `store` (SQL over the [`crate::db::Sql`] trait),
//! `downlink` (lease, re-send, wire messages), `sign` (the cloud key). wasm glue: `d1`, `object`,
//! `routes`. The registry and the JSON <-> value conversion are the shim's generated and plain files,
//! compiled here too, so both clouds validate with one table.

pub mod api;
pub mod downlink;
#[path = "../../../cloud-shim/src/command_registry_gen.rs"]
pub mod registry;
#[path = "../../../cloud-shim/src/commands/rows.rs"]
pub mod rows;
pub mod sign;
pub mod store;
#[path = "../../../cloud-shim/src/commands/value_json.rs"]
pub mod value_json;

pub(crate) mod d1;
pub mod object;

#[cfg(test)]
pub(crate) mod store_tests;

use crate::method::Method;

/// The command routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRoute {
    /// `POST /v1/gateways/{id}/commands`
    Create(String),
    /// `GET /v1/gateways/{id}/commands`
    History(String),
    /// `GET /v1/commands/{id}`
    Show(String),
    /// `POST /v1/commands/{id}/cancel`
    Cancel(String),
    /// `POST /v1/gateways/{id}/downlink` (the bridging shims' long-poll)
    Downlink(String),
}

/// The command route for a path, or `Err(allowed method)` for a known path with another method;
/// `None` for paths that are not command routes.
pub fn route(method: Method, path: &str) -> Option<Result<SessionRoute, &'static str>> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let only = |m: Method, allow: &'static str, r: SessionRoute| if method == m { Ok(r) } else { Err(allow) };
    Some(match segs.as_slice() {
        ["v1", "gateways", g, "commands"] => match method {
            Method::Post => Ok(SessionRoute::Create((*g).to_owned())),
            Method::Get | Method::Head => Ok(SessionRoute::History((*g).to_owned())),
            _ => Err("GET, POST"),
        },
        ["v1", "gateways", g, "downlink"] => only(Method::Post, "POST", SessionRoute::Downlink((*g).to_owned())),
        ["v1", "commands", c] => {
            if matches!(method, Method::Get | Method::Head) {
                Ok(SessionRoute::Show((*c).to_owned()))
            } else {
                Err("GET")
            }
        }
        ["v1", "commands", c, "cancel"] => only(Method::Post, "POST", SessionRoute::Cancel((*c).to_owned())),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_paths() {
        assert_eq!(route(Method::Post, "/v1/gateways/gw-1/commands"), Some(Ok(SessionRoute::Create("gw-1".into()))));
        assert_eq!(route(Method::Get, "/v1/gateways/gw-1/commands/"), Some(Ok(SessionRoute::History("gw-1".into()))));
        assert_eq!(route(Method::Get, "/v1/commands/c1"), Some(Ok(SessionRoute::Show("c1".into()))));
        assert_eq!(route(Method::Post, "/v1/commands/c1/cancel"), Some(Ok(SessionRoute::Cancel("c1".into()))));
        assert_eq!(route(Method::Post, "/v1/gateways/g/downlink"), Some(Ok(SessionRoute::Downlink("g".into()))));
        assert_eq!(route(Method::Get, "/v1/gateways/g/downlink"), Some(Err("POST")));
        assert_eq!(route(Method::Delete, "/v1/commands/c1"), Some(Err("GET")));
        assert_eq!(route(Method::Get, "/v1/sensors"), None);
    }
}
