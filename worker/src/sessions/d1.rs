//! wasm glue: [`Sql`] over a D1 binding.

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

use crate::db::{Arg, Row, Sql, SqlError, Stmt};

pub struct D1(pub D1Database);

fn js(a: &Arg) -> JsValue {
    match a {
        Arg::Null => JsValue::NULL,
        // Times and counters stay far below 2^53.
        Arg::Int(i) => JsValue::from_f64(*i as f64),
        Arg::Text(s) => JsValue::from_str(s),
    }
}

fn err(e: worker::Error) -> SqlError {
    SqlError::Db(e.to_string())
}

impl D1 {
    fn prepare(&self, sql: &str, args: &[Arg]) -> Result<D1PreparedStatement, SqlError> {
        let vals: Vec<JsValue> = args.iter().map(js).collect();
        self.0.prepare(sql).bind(&vals).map_err(err)
    }
}

impl Sql for D1 {
    async fn query(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, SqlError> {
        let r = self.prepare(sql, &args)?.all().await.map_err(err)?;
        if let Some(e) = r.error() {
            return Err(SqlError::Db(e));
        }
        r.results::<Row>().map_err(err)
    }

    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, SqlError> {
        let prepared = stmts.iter().map(|s| self.prepare(s.sql, &s.args)).collect::<Result<Vec<_>, _>>()?;
        let results = self.0.batch(prepared).await.map_err(err)?;
        results
            .iter()
            .map(|r| match r.error() {
                Some(e) => Err(SqlError::Db(e)),
                None => Ok(r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) as u64),
            })
            .collect()
    }
}
