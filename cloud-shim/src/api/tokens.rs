//! `scs-cloud-shim tokens add|revoke|list`: named API tokens with a scope, stored hashed in `api_tokens`.
//! Works while `serve` runs on the same data dir: the server looks tokens up on every request.

use std::path::PathBuf;
use std::process::ExitCode;

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

use crate::access::{sha256_hex, Scope, ENV_TOKEN_NAME};
use crate::store::{Store, StoreError};

pub const USAGE: &str = "\
USAGE:
    scs-cloud-shim tokens add NAME --scope read|operate|admin [--data-dir DIR]
    scs-cloud-shim tokens revoke NAME [--data-dir DIR]
    scs-cloud-shim tokens list [--data-dir DIR]

`add` prints the new token once on stdout; only its SHA-256 is stored. Scopes include the ones before
them: read (GET), operate (+ commands, cancel, upload grants, HTTP ingest), admin (+ destructive commands,
gateway provisioning). SCS_API_TOKEN stays valid as an admin token named \"env\". --data-dir defaults to
./scs-data, as for serve.
";

#[derive(Debug, Error)]
pub enum TokenCliError {
    #[error("{0}")]
    Usage(String),
    #[error("a token named {0:?} already exists (revoke it and pick another name)")]
    Exists(String),
    #[error("no token named {0:?}")]
    NotFound(String),
    #[error("token {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for TokenCliError {
    fn from(e: rusqlite::Error) -> Self {
        TokenCliError::Store(StoreError::from(e))
    }
}

/// A listed token: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub scope: Option<Scope>,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A fresh token: 32 random bytes, hex, with a prefix that makes it recognisable in a leaked file.
fn new_token() -> String {
    format!("scs_{}", crate::random::random_hex(32))
}

/// Stores a new token named `name` and returns it (the only time it exists in clear).
pub fn add(conn: &Connection, name: &str, scope: Scope, now_ms: i64) -> Result<String, TokenCliError> {
    scs_protocol::ids::validate_id("token name", name).map_err(|e| TokenCliError::Usage(e.to_string()))?;
    if name == ENV_TOKEN_NAME {
        return Err(TokenCliError::Usage(format!("{ENV_TOKEN_NAME:?} is reserved for SCS_API_TOKEN")));
    }
    let token = new_token();
    let inserted = conn.execute(
        "INSERT INTO api_tokens (name, sha256, scopes, created_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
        params![name, sha256_hex(token.as_bytes()), scope.column(), now_ms],
    )?;
    if inserted == 0 {
        return Err(TokenCliError::Exists(name.to_owned()));
    }
    Ok(token)
}

pub fn revoke(conn: &Connection, name: &str, now_ms: i64) -> Result<(), TokenCliError> {
    let revoked: Option<Option<i64>> =
        conn.query_row("SELECT revoked_ms FROM api_tokens WHERE name = ?1", [name], |r| r.get(0)).optional()?;
    match revoked {
        None => Err(TokenCliError::NotFound(name.to_owned())),
        Some(Some(_)) => Err(TokenCliError::AlreadyRevoked(name.to_owned())),
        Some(None) => {
            conn.execute("UPDATE api_tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL", params![name, now_ms])?;
            Ok(())
        }
    }
}

pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>, TokenCliError> {
    let mut stmt = conn.prepare("SELECT name, scopes, created_ms, revoked_ms FROM api_tokens ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        let scopes: String = r.get(1)?;
        Ok(TokenInfo { name: r.get(0)?, scope: Scope::from_column(&scopes), created_ms: r.get(2)?, revoked_ms: r.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `tokens ...` (the arguments after `tokens`).
pub fn cli(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(TokenCliError::Usage(m)) => {
            eprintln!("scs-cloud-shim tokens: {m}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("scs-cloud-shim tokens: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), TokenCliError> {
    let mut data_dir = PathBuf::from("scs-data");
    let mut scope = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| TokenCliError::Usage(format!("{name} needs a value")))
        };
        match flag {
            "--data-dir" => data_dir = PathBuf::from(value("--data-dir")?),
            "--scope" => {
                let v = value("--scope")?;
                scope = Some(
                    Scope::parse(&v)
                        .ok_or_else(|| TokenCliError::Usage(format!("--scope must be read, operate or admin, not {v:?}")))?,
                );
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(());
            }
            f if f.starts_with("--") => return Err(TokenCliError::Usage(format!("unknown option {f}"))),
            _ => positional.push(a.clone()),
        }
    }
    let now = crate::store::now_ms();
    let open = || Store::open(&data_dir);
    match positional.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["add", name] => {
            let scope = scope.ok_or_else(|| TokenCliError::Usage("add needs --scope read|operate|admin".into()))?;
            let name = (*name).to_owned();
            let token = open()?.call_blocking(|c| add(c, &name, scope, now))?;
            eprintln!("token {name:?} with scope {} created; it is shown only this once:", scope.as_str());
            println!("{token}");
            Ok(())
        }
        ["revoke", name] => {
            let name = (*name).to_owned();
            open()?.call_blocking(|c| revoke(c, &name, now))?;
            eprintln!("token {name:?} revoked");
            Ok(())
        }
        ["list"] => {
            let tokens = open()?.call_blocking(|c| list(c))?;
            println!("{:<32} {:<8} {:<15} revoked_ms", "name", "scope", "created_ms");
            for t in tokens {
                let revoked = t.revoked_ms.map_or_else(|| "-".to_owned(), |r| r.to_string());
                let scope = t.scope.map_or("?", Scope::as_str);
                println!("{:<32} {:<8} {:<15} {revoked}", t.name, scope, t.created_ms);
            }
            Ok(())
        }
        _ => Err(TokenCliError::Usage("expected add NAME --scope S, revoke NAME or list".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::lookup_token;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn add_lookup_revoke_list() {
        let c = db();
        let t = add(&c, "ci", Scope::Operate, 1).unwrap();
        assert!(t.starts_with("scs_") && t.len() == 68, "{t}");
        let p = lookup_token(&c, &sha256_hex(t.as_bytes())).unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.scope), ("ci", Scope::Operate));
        assert!(matches!(add(&c, "ci", Scope::Read, 2), Err(TokenCliError::Exists(_))));
        assert!(matches!(add(&c, "env", Scope::Read, 2), Err(TokenCliError::Usage(_))));
        assert!(matches!(add(&c, "bad name", Scope::Read, 2), Err(TokenCliError::Usage(_))));
        // The stored form is the hash, never the token.
        let stored: String = c.query_row("SELECT sha256 FROM api_tokens WHERE name='ci'", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, sha256_hex(t.as_bytes()));
        revoke(&c, "ci", 5).unwrap();
        assert_eq!(lookup_token(&c, &sha256_hex(t.as_bytes())).unwrap(), None);
        assert!(matches!(revoke(&c, "ci", 6), Err(TokenCliError::AlreadyRevoked(_))));
        assert!(matches!(revoke(&c, "nope", 6), Err(TokenCliError::NotFound(_))));
        let l = list(&c).unwrap();
        assert_eq!(l, vec![TokenInfo { name: "ci".into(), scope: Some(Scope::Operate), created_ms: 1, revoked_ms: Some(5) }]);
    }
}
