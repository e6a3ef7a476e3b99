//! Parameters of D1 statements, pure so the read queries can be built and tested on the host.
//! JavaScript numbers hold integers exactly only up to 2^53, so integer parameters are clamped to that
//! range; everything bigger travels inside JSON text and is read by SQLite's JSON functions.

/// Largest integer a JavaScript number holds exactly.
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Text(String),
    /// Clamped to ±[`MAX_SAFE_INT`] when bound.
    Int(i64),
}

impl Param {
    pub fn opt_text(v: Option<&str>) -> Param {
        v.map_or(Param::Null, |s| Param::Text(s.to_owned()))
    }

    pub fn safe_int(i: i64) -> i64 {
        i.clamp(-MAX_SAFE_INT, MAX_SAFE_INT)
    }
}

/// A statement and its positional parameters (`?1`, `?2`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub sql: std::borrow::Cow<'static, str>,
    pub params: Vec<Param>,
}

impl From<crate::ingest::plan::Stmt> for Query {
    fn from(s: crate::ingest::plan::Stmt) -> Query {
        Query { sql: s.sql.into(), params: vec![Param::Text(s.json)] }
    }
}

impl Query {
    pub fn new(sql: &'static str, params: Vec<Param>) -> Query {
        Query { sql: sql.into(), params }
    }
}

/// An in-memory SQLite for the host tests of the Worker's SQL, which needs the JSON functions D1 has.
#[cfg(test)]
pub fn test_db() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    assert!(
        conn.query_row("SELECT json('[]')", [], |r| r.get::<_, String>(0)).is_ok(),
        "this SQLite has no JSON functions: build with the workspace's LIBSQLITE3_FLAGS (.cargo/config.toml), which keep them"
    );
    conn
}
