//! Who is calling: the bearer token of a request, resolved to a name and a scope exactly as the shim's
//! `access` module does (`SCS_API_TOKEN` is an admin token named `env`; the `api_tokens` table holds
//! named tokens by SHA-256). The D1 lookup is in the glue; everything here is pure.

use sha2::{Digest, Sha256};

/// Name under which `SCS_API_TOKEN` appears in audits.
pub const ENV_TOKEN_NAME: &str = "env";

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Operate,
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

    /// The `api_tokens.scopes` column value.
    pub fn from_column(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "read,operate" => Some(Scope::Operate),
            "read,operate,admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    /// The actor recorded in audit trails, as the shim writes it.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, RFC 7235).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim_start().split_once([' ', '\t'])?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Lower-case hex SHA-256: the stored form of API tokens.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Compares in time independent of where the inputs differ (callers compare hashes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Is `token` the environment's admin token? An empty environment token matches nothing.
pub fn is_env_token(token: &str, env_token: &str) -> bool {
    !env_token.is_empty()
        && constant_time_eq(sha256_hex(token.as_bytes()).as_bytes(), sha256_hex(env_token.as_bytes()).as_bytes())
}

/// Why a caller was refused: 401 (who are you) or 403 (not allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(&'static str),
    Forbidden { token: String, needed: Scope, has: Scope, action: String },
}

/// Checks that `p` may perform `action`, which needs `needed`.
pub fn require(p: &Principal, needed: Scope, action: &str) -> Result<(), Refusal> {
    if p.scope >= needed {
        return Ok(());
    }
    Err(Refusal::Forbidden { token: p.name.clone(), needed, has: p.scope, action: action.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_scopes() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer\tabc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(Scope::from_column("read,operate"), Some(Scope::Operate));
        assert_eq!(Scope::from_column("operate"), None);
        assert!(is_env_token("s3cret", "s3cret"));
        assert!(!is_env_token("s3cret", ""));
        assert!(!is_env_token("other", "s3cret"));
        let reader = Principal { name: "r".into(), scope: Scope::Read };
        assert!(require(&reader, Scope::Read, "GET /v1/sensors").is_ok());
        assert!(matches!(require(&reader, Scope::Operate, "POST /v1/ingest"), Err(Refusal::Forbidden { .. })));
    }

    #[test]
    fn sha256_matches_the_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
