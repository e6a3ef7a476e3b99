//! Running [`Query`]s on D1. Every read query of this Worker returns one row with one column `j`
//! holding JSON text built by SQLite, so integers reach the client exactly (JavaScript numbers would
//! round anything above 2^53).

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::http::ApiError;
use crate::sql::{Param, Query};

pub fn db(env: &Env) -> Result<D1Database, ApiError> {
    env.d1(super::DB).map_err(|e| ApiError::internal(format!("D1 binding {}: {e}", super::DB)))
}

fn js(p: &Param) -> JsValue {
    match p {
        Param::Null => JsValue::NULL,
        Param::Text(s) => JsValue::from_str(s),
        // Exact: the value is within ±2^53 after clamping.
        Param::Int(i) => JsValue::from_f64(Param::safe_int(*i) as f64),
    }
}

pub fn prepare(db: &D1Database, q: &Query) -> Result<D1PreparedStatement, ApiError> {
    let params: Vec<JsValue> = q.params.iter().map(js).collect();
    db.prepare(q.sql.as_ref()).bind(&params).map_err(|e| ApiError::internal(format!("D1 bind: {e}")))
}

#[derive(serde::Deserialize)]
struct JsonRow {
    j: Option<String>,
}

/// The `j` column of the first row (`None` without rows or with NULL).
pub async fn json_text(db: &D1Database, q: &Query) -> Result<Option<String>, ApiError> {
    let row: Option<JsonRow> =
        prepare(db, q)?.first(None).await.map_err(|e| ApiError::unavailable(format!("D1 query failed: {e}")))?;
    Ok(row.and_then(|r| r.j))
}

/// Runs the queries as one D1 batch (one transaction) and returns the `j` column of each one's first row.
pub async fn batch_json(db: &D1Database, queries: &[Query]) -> Result<Vec<Option<String>>, worker::Error> {
    let stmts =
        queries.iter().map(|q| prepare(db, q).map_err(|e| worker::Error::RustError(e.message))).collect::<Result<Vec<_>, _>>()?;
    let results = db.batch(stmts).await?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        let rows: Vec<JsonRow> = r.results().unwrap_or_default();
        out.push(rows.into_iter().next().and_then(|r| r.j));
    }
    Ok(out)
}

/// Runs write statements as one D1 batch: all commit or none does.
pub async fn batch_write(db: &D1Database, queries: Vec<Query>) -> Result<(), worker::Error> {
    if queries.is_empty() {
        return Ok(());
    }
    let stmts =
        queries.iter().map(|q| prepare(db, q).map_err(|e| worker::Error::RustError(e.message))).collect::<Result<Vec<_>, _>>()?;
    db.batch(stmts).await?;
    Ok(())
}
