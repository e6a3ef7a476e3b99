//! The few SQL calls the command sessions and the artifact store make, behind a trait: D1 in the Worker
//! (`sessions/d1.rs`), rusqlite in the host tests. Rows come back as JSON objects, as D1 returns them.

use serde_json::{Map, Value as Json};
use thiserror::Error;

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(i: i64) -> Arg {
        Arg::Int(i)
    }
}
impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(s.to_owned())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(s)
    }
}
impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(o: Option<T>) -> Arg {
        o.map_or(Arg::Null, Into::into)
    }
}

pub type Row = Map<String, Json>;

/// One statement of a batch.
pub struct Stmt {
    pub sql: &'static str,
    pub args: Vec<Arg>,
}

#[derive(Debug, Error)]
pub enum SqlError {
    #[error("database: {0}")]
    Db(String),
}

/// What the session code needs from a SQLite-dialect database.
#[allow(async_fn_in_trait, reason = "single-threaded wasm: no Send bound wanted")]
pub trait Sql {
    /// Rows of one query.
    async fn query(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, SqlError>;
    /// Statements run in order in one transaction (a D1 batch); rows changed by each.
    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, SqlError>;
}

/// Integer column (D1 hands numbers to Rust as JSON numbers, possibly floats).
pub fn int(row: &Row, col: &str) -> Option<i64> {
    row.get(col).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

pub fn text(row: &Row, col: &str) -> Option<String> {
    row.get(col).and_then(|v| v.as_str()).map(str::to_owned)
}
