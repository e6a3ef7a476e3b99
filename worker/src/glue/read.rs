//! The read API (wasm glue around `crate::read`).

use worker::{Env, Headers, Request, Response};

use super::cache;
use super::d1::{db, json_text};
use super::respond::json_text_response;
use crate::http::ApiError;
use crate::read::{self, Metrics, SensorList};

fn pairs(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let url = req.url().map_err(|e| ApiError::bad_request(format!("bad URL: {e}")))?;
    Ok(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

fn bad_json(e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("store answer: {e}"))
}

/// `GET /v1/sensors`: a page (bare JSON array) with `X-Next-Cursor` and `Link` when more follow; pages
/// come from KV while no ingest changed the sensors.
pub async fn sensors(req: &Request, env: &Env) -> Result<Response, ApiError> {
    let p = pairs(req)?;
    let q = SensorList::parse(p.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let query_string = req.url().ok().and_then(|u| u.query().map(str::to_owned)).unwrap_or_default();
    let (hit, key) = cache::get_sensors(env, &query_string).await;
    let cached = hit.and_then(|h| h.split_once('\n').map(|(n, b)| (n.to_owned(), b.to_owned())));
    let (body, next) = match cached {
        Some((next, body)) => (body, Some(next).filter(|n| !n.is_empty())),
        None => {
            let rows = json_text(&db(env)?, &q.query()).await?.unwrap_or_else(|| "[]".into());
            let (body, next) = q.page(&rows).map_err(bad_json)?;
            if let Some(key) = key {
                cache::put_sensors(env, &key, &format!("{}\n{body}", next.clone().unwrap_or_default())).await;
            }
            (body, next)
        }
    };
    let mut resp = json_text_response(200, body)?;
    if let Some(cursor) = next {
        let h: &mut Headers = resp.headers_mut();
        let _ = h.set("X-Next-Cursor", &cursor);
        let _ = h.set("Link", &q.next_link(&cursor));
    }
    Ok(resp)
}

pub async fn sensor(env: &Env, id: &str) -> Result<Response, ApiError> {
    let j = json_text(&db(env)?, &read::sensor_query(id)).await?;
    let body = j.ok_or_else(|| ApiError::not_found(format!("no sensor {id:?}")))?;
    json_text_response(200, body)
}

pub async fn metrics(req: &Request, env: &Env, id: &str) -> Result<Response, ApiError> {
    let p = pairs(req)?;
    let q = Metrics::parse(p.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let j = json_text(&db(env)?, &q.query(id)).await?.unwrap_or_else(|| "[0,[]]".into());
    let body = q.body(id, &j).map_err(bad_json)?.ok_or_else(|| ApiError::not_found(format!("no sensor {id:?}")))?;
    json_text_response(200, body)
}

pub async fn gateway_stats(env: &Env, id: &str) -> Result<Response, ApiError> {
    let j = json_text(&db(env)?, &read::gateway_stats_query(id)).await?.unwrap_or_else(|| "{}".into());
    json_text_response(200, j)
}

pub async fn stats(env: &Env) -> Result<Response, ApiError> {
    let j = json_text(&db(env)?, &read::stats_query()).await?.unwrap_or_else(|| "{}".into());
    json_text_response(200, j)
}
