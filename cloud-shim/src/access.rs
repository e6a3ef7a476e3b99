//! Who is calling: API tokens with scopes (bearer), gateways with their own credentials (Basic), and the
//! one parser for the Authorization header. A leaf below every HTTP module, so the command and artifact
//! routes check a caller without depending on the router; `api::auth` adds the middleware.
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::digest;
use rusqlite::{Connection, OptionalExtension};
use thiserror::Error;

use crate::http_error::ApiError;

/// Name under which `SCS_API_TOKEN` appears in the audit.
pub const ENV_TOKEN_NAME: &str = "env";

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET every resource.
    Read,
    /// Create and cancel non-destructive commands, mint upload grants, HTTP ingest.
    Operate,
    /// Destructive commands, gateway provisioning and re-parenting.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// `read`, `operate` or `admin`, as the CLI takes it.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "operate" => Some(Scope::Operate),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// The `api_tokens.scopes` value: the full cumulative list.
    pub fn column(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "read,operate",
            Scope::Admin => "read,operate,admin",
        }
    }

    pub fn from_column(s: &str) -> Option<Scope> {
        [Scope::Read, Scope::Operate, Scope::Admin].into_iter().find(|sc| sc.column() == s)
    }
}

/// An authenticated API caller: the token's name (recorded in audits) and its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    /// 403 naming the missing scope unless this token has `needed`.
    pub fn require(&self, needed: Scope, action: &str) -> Result<(), ApiError> {
        if self.scope >= needed {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("token {:?} lacks the {} scope needed to {action}", self.name, needed.as_str()),
        )
        .with("requiredScope", needed.as_str())
        .with("tokenScope", self.scope.as_str()))
    }

    /// The actor recorded in audit trails.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// The credentials of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, rest) = authorization(headers)?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user id and password of `Authorization: Basic base64(user:password)` (RFC 7617).
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let (scheme, rest) = authorization(headers)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// `(scheme, credentials)` of the Authorization header.
fn authorization(headers: &HeaderMap) -> Option<(&str, &str)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim_start();
    v.split_once([' ', '\t'])
}

/// Lower-case hex SHA-256, the stored form of API tokens and MQTT passwords.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Lower-case hex: the one encoder for hashes, tokens and ids in the shim.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Compares in time independent of where the inputs differ. Callers compare hashes, so even the length
/// is public knowledge.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The live, unrevoked token whose SHA-256 is `hash`. The lookup is by hash, so a token is never compared
/// byte by byte against a secret.
pub fn lookup_token(conn: &Connection, hash: &str) -> rusqlite::Result<Option<Principal>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT name, scopes FROM api_tokens WHERE sha256 = ?1 AND revoked_ms IS NULL")?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(name, scopes)| {
        let scope = Scope::from_column(&scopes);
        if scope.is_none() {
            log::error!("api token {name:?} has unknown scopes {scopes:?}; refused");
        }
        scope.map(|scope| Principal { name, scope })
    }))
}

/// Why a gateway's own credentials were refused.
#[derive(Debug, Error)]
pub enum GatewayAuthError {
    #[error("missing gateway credentials (Authorization: Basic base64(gateway_id:mqtt_password))")]
    Missing,
    #[error("unknown gateway {gateway:?} or wrong password")]
    Refused { gateway: String },
    #[error("gateway {gateway:?} is revoked")]
    Revoked { gateway: String },
    #[error("gateway {gateway:?}: looking up its credentials: {source}")]
    Store {
        gateway: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl GatewayAuthError {
    pub fn into_response(self) -> Response {
        let status = match self {
            GatewayAuthError::Store { .. } => {
                log::error!("{self}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::UNAUTHORIZED,
        };
        let mut resp = ApiError::new(status, self.to_string()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"scs-gateway\""));
        }
        resp
    }
}

/// The gateway that `Authorization: Basic` proves, checked against table `gateways` (SHA-256 of the
/// MQTT password, status `active`), read live so `gateways revoke` applies at once.
pub fn authenticate_gateway(conn: &Connection, headers: &HeaderMap) -> Result<String, GatewayAuthError> {
    let (gateway, password) = basic(headers).ok_or(GatewayAuthError::Missing)?;
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT mqtt_password_sha256, status FROM gateways WHERE id = ?1")
        .and_then(|mut s| s.query_row([&gateway], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(|source| GatewayAuthError::Store { gateway: gateway.clone(), source })?;
    // Hash even for an unknown gateway so the answer takes the same time either way.
    let presented = sha256_hex(password.as_bytes());
    let (stored, status) = row.unwrap_or_else(|| (String::new(), String::new()));
    if !constant_time_eq(presented.as_bytes(), stored.to_ascii_lowercase().as_bytes()) {
        return Err(GatewayAuthError::Refused { gateway });
    }
    if status != "active" {
        return Err(GatewayAuthError::Revoked { gateway });
    }
    Ok(gateway)
}

/// Table `gateways` as IDENTITY.md specifies it, for tests of this module and the upload routes; `IF NOT
/// EXISTS` so it is a no-op once the gateway-identity migration has created the table.
#[cfg(test)]
pub(crate) const GATEWAYS_FIXTURE: &str = "CREATE TABLE IF NOT EXISTS gateways (
    id TEXT PRIMARY KEY, public_key BLOB NOT NULL, mqtt_password_sha256 TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active', created_ms INTEGER NOT NULL, revoked_ms INTEGER)";

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(&HeaderMap::new()), None);
        for v in ["Bearer secret", "bearer secret", "BEARER secret", "BeArEr   secret "] {
            assert_eq!(bearer(&with_auth(v)), Some("secret"), "{v}");
        }
        assert_eq!(bearer(&with_auth("Basic secret")), None);
        assert_eq!(bearer(&with_auth("Bearer")), None);
        assert_eq!(bearer(&with_auth("Bearer ")), None);
        assert_eq!(bearer(&with_auth("Bearersecret")), None);
    }

    #[test]
    fn basic_credentials() {
        // base64("gw-1:pa:ss") — the password may contain ':'.
        assert_eq!(basic(&with_auth("Basic Z3ctMTpwYTpzcw==")), Some(("gw-1".into(), "pa:ss".into())));
        assert_eq!(basic(&with_auth("BASIC Z3ctMTpwYTpzcw==")), Some(("gw-1".into(), "pa:ss".into())));
        assert_eq!(basic(&with_auth("Basic !!!")), None);
        assert_eq!(basic(&with_auth("Bearer Z3ctMTpwYTpzcw==")), None);
        // base64("nocolon")
        assert_eq!(basic(&with_auth("Basic bm9jb2xvbg==")), None);
    }

    #[test]
    fn scopes_are_cumulative() {
        let p = Principal { name: "ops".into(), scope: Scope::Operate };
        assert!(p.require(Scope::Read, "x").is_ok());
        assert!(p.require(Scope::Operate, "x").is_ok());
        let e = p.require(Scope::Admin, "reboot").unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("admin"), "{}", e.message);
        for s in [Scope::Read, Scope::Operate, Scope::Admin] {
            assert_eq!(Scope::from_column(s.column()), Some(s));
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn gateway_credentials_against_the_table() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(GATEWAYS_FIXTURE).unwrap();
        let hash = sha256_hex(b"pw");
        conn.execute("INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES ('gw-1', x'00', ?1, 'active', 0)", [&hash]).unwrap();
        conn.execute("INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES ('gw-2', x'00', ?1, 'revoked', 0)", [&hash]).unwrap();
        // base64 of gw-1:pw, gw-1:no, gw-2:pw, gw-3:pw
        assert_eq!(authenticate_gateway(&conn, &with_auth("Basic Z3ctMTpwdw==")).unwrap(), "gw-1");
        assert!(matches!(authenticate_gateway(&conn, &with_auth("Basic Z3ctMTpubw==")), Err(GatewayAuthError::Refused { .. })));
        assert!(matches!(authenticate_gateway(&conn, &with_auth("Basic Z3ctMjpwdw==")), Err(GatewayAuthError::Revoked { .. })));
        assert!(matches!(authenticate_gateway(&conn, &with_auth("Basic Z3ctMzpwdw==")), Err(GatewayAuthError::Refused { .. })));
        assert!(matches!(authenticate_gateway(&conn, &HeaderMap::new()), Err(GatewayAuthError::Missing)));
    }
}
