//! SCS cloud on Cloudflare: the Worker (wasm32, workers-rs).
//!
//! ```text
//! POST /v1/ingest ──► verify + validate (scs-protocol) ──► Queue ──► consumer ──► D1 (one batch = one tx)
//!        ▲ waits until the consumer's commit is visible, then answers stored/duplicate/rejected
//! GET /v1/... ──► D1 (sensor list and registry cached in KV)
//! ```
//!
//! Logic lives in plain modules that build and test on the host (`cargo test -p scs-worker`); the
//! modules that touch JavaScript-backed bindings (`worker::Env`, D1, Queue, KV) are thin and marked
//! `wasm glue` in their docs. `router` decides which handler runs; command sessions (Durable Objects)
//! and artifacts (R2) add their routes there.

pub mod artifacts;
pub mod auth;
pub mod cors;
pub mod db;
pub mod random;
pub mod releases;
pub mod router;
pub mod sessions;
pub mod sql;
pub mod verify;

pub mod http;
pub mod ingest;
pub mod method;
pub mod read;

// wasm glue: the entry points (fetch, queue) and the handlers that touch bindings.
mod glue;
