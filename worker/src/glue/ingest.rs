//! `POST /v1/ingest` and the Queue consumer (wasm glue around `crate::ingest`).

use std::collections::HashMap;
use std::time::Duration;

use scs_protocol::http_ingest::{decode_batch, MAX_BODY};
use scs_protocol::{decode_uplink, rejection::Rejection};
use serde_json::json;
use worker::{
    console_error, console_warn, event, js_sys, wasm_bindgen::JsValue, Context, Date, Delay, Env, MessageBatch, QueueContentType,
    RawMessageBuilder, Request, Response,
};

use super::d1::{batch_json, batch_write, db, json_text};
use super::respond::json_response;
use crate::http::ApiError;
use crate::ingest::envelope::{self, Entry};
use crate::ingest::plan::{self, Input, Plan, Snapshot};
use crate::ingest::{self as core, Checked, ItemResult, KeyState};
use crate::sql::{Param, Query};

/// Queue producer binding.
pub const QUEUE: &str = "INGEST_QUEUE";
/// How long a request waits for the consumer to commit its messages; below the forwarding shim's 30 s.
const COMMIT_WAIT: Duration = Duration::from_secs(20);
/// Cloudflare's limits on one `sendBatch`: 100 messages, 256 KB.
const SEND_BATCH_MESSAGES: usize = 100;
const SEND_BATCH_BYTES: usize = 250 * 1024;

fn now_ms() -> i64 {
    i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX)
}

pub async fn ingest(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let declared = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::new(413, format!("ingest body over {MAX_BODY} bytes")));
    }
    let ct = req.headers().get("Content-Type").ok().flatten().unwrap_or_default();
    if !ct.is_empty() && !ct.starts_with("application/cbor") && !ct.starts_with("application/octet-stream") {
        return Err(ApiError::new(415, format!("expected application/cbor, got {ct}")));
    }
    let body = req.bytes().await.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(ApiError::new(413, format!("ingest body over {MAX_BODY} bytes")));
    }
    let messages = decode_batch(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let d1 = db(env)?;

    let gateways = core::gateways_named(messages.iter().map(|(t, _)| t.as_str()));
    let keys_json = json_text(&d1, &Query::new(core::GATEWAY_KEYS, vec![Param::Text(json!(gateways).to_string())]))
        .await?
        .unwrap_or_else(|| "[]".into());
    let keys: HashMap<String, KeyState> =
        core::parse_gateway_keys(&keys_json).map_err(|e| ApiError::internal(format!("gateway keys: {e}")))?;
    let lookup = |gw: &str| keys.get(gw).copied().unwrap_or(KeyState::Unknown);
    let now = now_ms();
    let checked: Vec<Checked> = messages.into_iter().map(|(topic, payload)| core::check(topic, &payload, &lookup)).collect();

    // Already stored: answered `duplicate` without another trip through the Queue.
    let store_keys: Vec<Option<(String, String, i64)>> = checked.iter().map(core::store_key).collect();
    let present = stored(&d1, &store_keys).await?;
    let mut entries = Vec::new();
    for (i, c) in checked.iter().enumerate() {
        if present.get(i).copied().unwrap_or(false) {
            continue;
        }
        entries.push(match c {
            Checked::Valid { topic, inner, .. } => Entry::Valid { topic: topic.clone(), inner: inner.clone(), received_at: now },
            Checked::Rejected { topic, rejection } => rejected_entry(topic, rejection, now),
        });
    }
    let (queue_messages, direct) = envelope::pack(entries);
    // Command updates and messages too big for one Queue message are written directly, through the
    // consumer's own code (`Entry::direct` says why).
    if !direct.is_empty() {
        apply(env, direct).await.map_err(|e| ApiError::unavailable(format!("store failed, retry later: {e}")))?;
    }
    send(env, queue_messages).await?;

    // Answer only once the consumer's transaction is visible.
    let deadline = now + i64::try_from(COMMIT_WAIT.as_millis()).unwrap_or(i64::MAX);
    let mut done = present.clone();
    let mut pause = 10u64;
    loop {
        let pending: Vec<usize> = (0..checked.len())
            .filter(|i| store_keys.get(*i).is_some_and(Option::is_some) && !done.get(*i).copied().unwrap_or(false))
            .collect();
        if pending.is_empty() {
            break;
        }
        if now_ms() > deadline {
            return Err(ApiError::unavailable(format!(
                "{} messages queued but not yet committed after {} s; send them again (stored at most once)",
                pending.len(),
                COMMIT_WAIT.as_secs()
            )));
        }
        Delay::from(Duration::from_millis(pause)).await;
        pause = (pause * 2).min(250);
        let keys: Vec<Option<(String, String, i64)>> =
            store_keys.iter().enumerate().map(|(i, k)| if pending.contains(&i) { k.clone() } else { None }).collect();
        for (i, yes) in stored(&d1, &keys).await?.into_iter().enumerate() {
            if yes {
                if let Some(d) = done.get_mut(i) {
                    *d = true;
                }
            }
        }
    }
    if checked.iter().zip(&present).any(|(c, dup)| !dup && core::changes_sensors(c)) {
        super::cache::sensors_changed(env).await;
    }
    let results: Vec<ItemResult> = checked
        .iter()
        .zip(&present)
        .map(|(c, dup)| match c {
            Checked::Rejected { .. } => ItemResult::new(c, "rejected"),
            Checked::Valid { .. } if *dup => ItemResult::new(c, "duplicate"),
            Checked::Valid { .. } => ItemResult::new(c, "stored"),
        })
        .collect();
    json_response(200, &json!({ "results": results }))
}

fn rejected_entry(topic: &str, r: &Rejection, at: i64) -> Entry {
    Entry::Rejected {
        gateway: r.gateway.clone(),
        reason: r.reason.to_owned(),
        error: r.error.clone(),
        topic: topic.to_owned(),
        at,
    }
}

/// For each key (None: never stored), whether `ingest_receipts` holds it.
async fn stored(d1: &worker::D1Database, keys: &[Option<(String, String, i64)>]) -> Result<Vec<bool>, ApiError> {
    let mut out = vec![false; keys.len()];
    let (idx, arr): (Vec<usize>, Vec<serde_json::Value>) =
        keys.iter().enumerate().filter_map(|(i, k)| k.as_ref().map(|(g, b, s)| (i, json!([g, b, s])))).unzip();
    if arr.is_empty() {
        return Ok(out);
    }
    let text = json_text(d1, &Query::new(core::STORED_INDEXES, vec![Param::Text(json!(arr).to_string())]))
        .await?
        .unwrap_or_else(|| "[]".into());
    let hits: Vec<usize> = serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("stored keys: {e}")))?;
    for h in hits {
        if let Some(slot) = idx.get(h).and_then(|i| out.get_mut(*i)) {
            *slot = true;
        }
    }
    Ok(out)
}

/// Sends Queue messages in `sendBatch` calls within Cloudflare's limits.
async fn send(env: &Env, messages: Vec<Vec<u8>>) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Ok(());
    }
    let queue = env.queue(QUEUE).map_err(|e| ApiError::internal(format!("Queue binding {QUEUE}: {e}")))?;
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut it = messages.into_iter().peekable();
    while let Some(m) = it.next() {
        bytes += m.len();
        let array = js_sys::Uint8Array::from(m.as_slice());
        batch.push(RawMessageBuilder::new(JsValue::from(array)).build_with_content_type(QueueContentType::V8));
        let next_len = it.peek().map_or(0, Vec::len);
        if it.peek().is_none() || batch.len() >= SEND_BATCH_MESSAGES || bytes + next_len > SEND_BATCH_BYTES {
            queue
                .send_raw_batch(std::mem::take(&mut batch))
                .await
                .map_err(|e| ApiError::unavailable(format!("queue send failed, retry later: {e}")))?;
            bytes = 0;
        }
    }
    Ok(())
}

/// Largest number of sensors one gateway may own besides itself (`MAX_CHILDREN` variable).
fn max_children(env: &Env) -> usize {
    env.var("MAX_CHILDREN").ok().and_then(|v| v.to_string().parse().ok()).unwrap_or(plan::DEFAULT_MAX_CHILDREN)
}

/// Writes entries to D1 in one transaction: the consumer's work, also used for direct entries.
pub async fn apply(env: &Env, entries: Vec<Entry>) -> Result<(), worker::Error> {
    let inputs: Vec<Input> = entries
        .into_iter()
        .map(|e| match e {
            Entry::Valid { topic, inner, received_at } => match decode_uplink(&topic, &inner) {
                Ok((t, msg)) => Input::Valid { gateway: t.gateway, topic, msg, received_at },
                // Valid when checked; a decoder change between deploys can make it invalid now.
                Err(e) => {
                    let r = Rejection::classify(&topic, &inner, &e);
                    Input::Rejected { gateway: r.gateway, reason: r.reason.to_owned(), error: r.error, topic, at: received_at }
                }
            },
            Entry::Rejected { gateway, reason, error, topic, at } => Input::Rejected { gateway, reason, error, topic, at },
        })
        .collect();
    if inputs.is_empty() {
        return Ok(());
    }
    let d1 = env.d1(super::DB)?;
    let snap_queries: Vec<Query> = plan::snapshot_queries(&inputs).into_iter().map(Query::from).collect();
    let snap = batch_json(&d1, &snap_queries).await?;
    let text = |i: usize| snap.get(i).cloned().flatten().unwrap_or_else(|| "[]".into());
    let (a, b, c, d) = (text(0), text(1), text(2), text(3));
    let snapshot = Snapshot::parse([&a, &b, &c, &d]).map_err(|e| worker::Error::RustError(format!("snapshot: {e}")))?;
    let mut plan = Plan::build(&inputs, snapshot, max_children(env));
    if !plan.command_updates.is_empty() {
        let verdicts = super::hooks::command_updates(env, &plan.command_updates).await;
        plan.command_verdicts(&verdicts, now_ms()).map_err(|e| worker::Error::RustError(format!("command update: {e}")))?;
    }
    batch_write(&d1, plan.statements().into_iter().map(Query::from).collect()).await?;
    if plan.sensors_changed {
        super::cache::sensors_changed(env).await;
    }
    Ok(())
}

#[event(queue)]
async fn consume(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> worker::Result<()> {
    let mut entries = Vec::new();
    for m in batch.raw_iter() {
        let bytes = js_sys::Uint8Array::new(&m.body()).to_vec();
        match envelope::decode(&bytes) {
            Ok(e) => entries.extend(e),
            // Nothing this Worker wrote; retrying cannot help.
            Err(e) => console_error!("dropping an unreadable ingest queue message: {e}"),
        }
    }
    match apply(&env, entries).await {
        Ok(()) => batch.ack_all(),
        Err(e) => {
            console_warn!("ingest batch not stored, retrying: {e}");
            batch.retry_all();
        }
    }
    Ok(())
}
