//! The read API (wasm glue around `crate::read`).

use worker::{Env, Headers, Request, Response};

use super::cache;
use super::d1::{batch_json, db, json_text};
use super::json_response;
use super::respond::json_text_response;
use crate::http::ApiError;
use crate::read::devices::EventsOf;
use crate::read::{self, Events, Fleet, Metrics, SensorList};

fn pairs(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let url = req.url().map_err(|e| ApiError::bad_request(format!("bad URL: {e}")))?;
    Ok(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

fn bad_json(e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("store answer: {e}"))
}

/// `GET /v1/sensors`: a page (bare JSON array) with `X-Next-Cursor` and `Link` when more follow; pages
/// come from KV while no ingest changed the sensors (`X-Cache: hit` or `miss` says which). A
/// `parentSensorId` page carries live health and always comes from D1.
pub async fn sensors(req: &Request, env: &Env) -> Result<Response, ApiError> {
    let p = pairs(req)?;
    let q = SensorList::parse(p.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let query_string = req.url().ok().and_then(|u| u.query().map(str::to_owned)).unwrap_or_default();
    let (hit, key) = if q.with_health() { (None, None) } else { cache::get_sensors(env, &query_string).await };
    let cached = hit.and_then(|h| h.split_once('\n').map(|(n, b)| (n.to_owned(), b.to_owned())));
    let from_cache = cached.is_some();
    let (body, next) = match cached {
        Some((next, body)) => (body, Some(next).filter(|n| !n.is_empty())),
        None => {
            let d1 = db(env)?;
            let rows = json_text(&d1, &q.query()).await?.unwrap_or_else(|| "[]".into());
            let (mut body, next) = q.page(&rows).map_err(bad_json)?;
            if q.with_health() {
                let samples = json_text(&d1, &SensorList::health_query(&body).map_err(bad_json)?).await?;
                body = SensorList::add_health(&body, samples.as_deref().unwrap_or("[]")).map_err(bad_json)?;
            }
            if let Some(key) = key {
                cache::put_sensors(env, &key, &format!("{}\n{body}", next.clone().unwrap_or_default())).await;
            }
            (body, next)
        }
    };
    let mut resp = json_text_response(200, body)?;
    let h: &mut Headers = resp.headers_mut();
    if !q.with_health() {
        let _ = h.set("X-Cache", if from_cache { "hit" } else { "miss" });
    }
    if let Some(cursor) = next {
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

/// `GET /v1/fleet`: one D1 batch of three reads.
pub async fn fleet(req: &Request, env: &Env) -> Result<Response, ApiError> {
    let p = pairs(req)?;
    let f = Fleet::parse(p.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let j = batch_json(&db(env)?, &Fleet::queries()).await.map_err(|e| ApiError::unavailable(format!("D1 query failed: {e}")))?;
    let text = |i: usize| j.get(i).cloned().flatten().unwrap_or_else(|| "[]".into());
    let body = f.body([&text(0), &text(1), &text(2)]).map_err(bad_json)?;
    json_response(200, &body)
}

/// `GET /v1/gateways/{id}/devices`.
pub async fn devices(env: &Env, id: &str) -> Result<Response, ApiError> {
    let j = batch_json(&db(env)?, &read::devices_queries(id))
        .await
        .map_err(|e| ApiError::unavailable(format!("D1 query failed: {e}")))?;
    let text = |i: usize| j.get(i).cloned().flatten().unwrap_or_else(|| "[]".into());
    json_response(200, &read::devices_body(id, [&text(0), &text(1)]).map_err(bad_json)?)
}

/// `GET /v1/sensors/{id}/events` and `GET /v1/gateways/{id}/events`.
pub async fn events(req: &Request, env: &Env, of: EventsOf, id: &str) -> Result<Response, ApiError> {
    let p = pairs(req)?;
    let q = Events::parse(p.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let j = json_text(&db(env)?, &q.query(of, id)).await?.unwrap_or_else(|| "[0,[]]".into());
    let what = match of {
        EventsOf::Sensor => "sensor",
        EventsOf::Gateway => "gateway",
    };
    let body = q.body(of, id, &j).map_err(bad_json)?.ok_or_else(|| ApiError::not_found(format!("no {what} {id:?}")))?;
    json_response(200, &body)
}
