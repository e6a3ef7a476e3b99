//! KV as a cache for what is read often and changes rarely: the sensor list. Cached pages are keyed by
//! a generation that the ingest consumer bumps whenever a batch creates sensors or changes their
//! description or status, so a changed inventory is never served from an older page; per-sample
//! `lastSeen` updates do not bump it and may lag by up to [`TTL_SECS`]. `POST /v1/ingest` also bumps it
//! before answering for stored inventories, because the consumer's own bump can land
//! after the request saw its commit: the sender then reads its own change. (Across Cloudflare
//! locations KV itself is eventually consistent, up to about 60 s.) Pages with live health
//! (`parentSensorId`) are not cached.

use worker::Env;

/// KV binding.
pub const KV: &str = "CACHE";
const GENERATION: &str = "sensors:generation";
/// Lifetime of a cached page (KV's minimum).
pub const TTL_SECS: u64 = 60;

/// The current generation ("0" before the first change).
async fn generation(env: &Env) -> Option<String> {
    let kv = env.kv(KV).ok()?;
    Some(kv.get(GENERATION).text().await.ok().flatten().unwrap_or_else(|| "0".into()))
}

/// A cached sensor-list page for `query` (the request's query string), with its cache key.
pub async fn get_sensors(env: &Env, query: &str) -> (Option<String>, Option<String>) {
    let Some(gen) = generation(env).await else { return (None, None) };
    let key = format!("sensors:{gen}:{query}");
    let Ok(kv) = env.kv(KV) else { return (None, None) };
    let hit = kv.get(&key).text().await.ok().flatten();
    (hit, Some(key))
}

pub async fn put_sensors(env: &Env, key: &str, body: &str) {
    if let Ok(kv) = env.kv(KV) {
        if let Ok(put) = kv.put(key, body) {
            // A failed cache write only costs a later D1 read.
            let _ = put.expiration_ttl(TTL_SECS).execute().await;
        }
    }
}

/// Called after a committed batch changed sensors: later reads use a new generation. The random part
/// keeps two changes within one millisecond (Workers' clock only moves across I/O) from sharing one.
pub async fn sensors_changed(env: &Env) {
    if let Ok(kv) = env.kv(KV) {
        let gen =
            format!("{}-{:08x}", worker::Date::now().as_millis(), (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u32);
        if let Ok(put) = kv.put(GENERATION, gen) {
            let _ = put.execute().await;
        }
    }
}
