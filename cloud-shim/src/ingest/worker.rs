//! The Worker-forwarding ingest backend (`--worker-url`): each group is POSTed to `{worker}/v1/ingest`
//! as the raw `[topic, payload]` pairs of the HTTP ingest contract, over HTTPS (ureq, rustls + ring) or
//! plain HTTP on loopback. Receipts follow only the Worker's `stored`/`duplicate` answers; while the
//! Worker is down the group is retried with backoff, then reported failed (no receipt: the agent keeps
//! the data and sends it again).

use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use super::{Backend, Item, ItemResult, Outcome};

/// Requests stay under the contract's 8 MiB body limit.
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("worker CA file {path}: {source}")]
    CaRead { path: String, source: std::io::Error },
    #[error("worker CA file {path}: {source}")]
    CaPem { path: String, source: ureq::Error },
    #[error("worker CA file {path}: no certificate in the file")]
    CaEmpty { path: String },
    #[error("worker {url}: {source}")]
    Transport { url: String, source: ureq::Error },
    #[error("worker {url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("worker {url} sent an unusable answer: {source}")]
    AnswerJson { url: String, source: serde_json::Error },
    #[error("worker {url} sent an unusable answer: {reason}")]
    Answer { url: String, reason: String },
}

impl WorkerError {
    /// Worth another attempt: the network, or a 5xx/429 from the Worker. A 4xx will not get better.
    fn retryable(&self) -> bool {
        match self {
            WorkerError::Transport { .. } => true,
            WorkerError::Status { status, .. } => *status >= 500 || *status == 429,
            WorkerError::Answer { .. }
            | WorkerError::AnswerJson { .. }
            | WorkerError::CaRead { .. }
            | WorkerError::CaPem { .. }
            | WorkerError::CaEmpty { .. } => false,
        }
    }
}

#[derive(serde::Deserialize)]
struct IngestAnswer {
    results: Vec<ItemResult>,
}

pub struct WorkerBackend {
    agent: ureq::Agent,
    url: String,
    auth: String,
}

impl WorkerBackend {
    /// `base` is the Worker's root URL (`https://api.example` → POSTs to `https://api.example/v1/ingest`).
    /// `ca`: a PEM file of CAs to trust instead of the public web roots (a private Worker endpoint).
    pub fn new(base: &str, token: &str, ca: Option<&Path>) -> Result<WorkerBackend, WorkerError> {
        Ok(WorkerBackend {
            agent: http_agent(ca, Duration::from_secs(30))?,
            url: format!("{}/v1/ingest", base.trim_end_matches('/')),
            auth: format!("Bearer {token}"),
        })
    }

    fn post(&self, items: &[Item]) -> Result<Vec<ItemResult>, WorkerError> {
        let body = encode_batch(items.iter().map(|i| (i.topic.as_str(), i.payload.as_slice())));
        let url = self.url.clone();
        let mut resp = self
            .agent
            .post(&self.url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/cbor")
            .send(&body[..])
            .map_err(|source| WorkerError::Transport { url: url.clone(), source })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|source| WorkerError::Transport { url: url.clone(), source })?;
        if status != 200 {
            let body = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(WorkerError::Status { url, status, body });
        }
        let answer: IngestAnswer =
            serde_json::from_slice(&bytes).map_err(|source| WorkerError::AnswerJson { url: url.clone(), source })?;
        if answer.results.len() != items.len() {
            return Err(WorkerError::Answer {
                url,
                reason: format!("{} results for {} messages", answer.results.len(), items.len()),
            });
        }
        Ok(answer.results)
    }

    fn post_with_retry(&self, items: &[Item]) -> Result<Vec<ItemResult>, WorkerError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.post(items) {
                Ok(r) => return Ok(r),
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    log::warn!("ingest forward attempt {attempt}/{ATTEMPTS} failed, retrying in {backoff:?}: {e}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The HTTP client for the Worker: rustls + ring, the public web roots or the PEM CAs in `ca`, statuses
/// returned rather than turned into errors, every request bounded by `timeout`.
pub fn http_agent(ca: Option<&Path>, timeout: Duration) -> Result<ureq::Agent, WorkerError> {
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if let Some(path) = ca {
        tls = tls.root_certs(RootCerts::new_with_certs(&read_ca(path)?));
    }
    let config =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).tls_config(tls.build()).build();
    Ok(ureq::Agent::new_with_config(config))
}

fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, WorkerError> {
    let shown = || path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| WorkerError::CaRead { path: shown(), source })?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|source| WorkerError::CaPem { path: shown(), source })? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(WorkerError::CaEmpty { path: shown() });
    }
    Ok(certs)
}

impl Backend for WorkerBackend {
    fn command_lane(&self) -> Option<Box<dyn Backend>> {
        Some(Box::new(WorkerBackend { agent: self.agent.clone(), url: self.url.clone(), auth: self.auth.clone() }))
    }

    fn store(&mut self, items: &[Item]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for chunk in chunks(items) {
            let started = std::time::Instant::now();
            let posted = self.post_with_retry(chunk);
            log::debug!("forwarded {} messages to the worker in {:?}", chunk.len(), started.elapsed());
            match posted {
                Ok(results) => outcomes.extend(results.into_iter().map(outcome_of)),
                Err(e) => {
                    log::error!("forwarding {} messages to the worker failed: {e}", chunk.len());
                    outcomes.extend(std::iter::repeat_n(Outcome::Failed { error: e.to_string() }, chunk.len()));
                }
            }
        }
        outcomes
    }
}

fn outcome_of(r: ItemResult) -> Outcome {
    match r.status.as_str() {
        "stored" => Outcome::Stored,
        "duplicate" => Outcome::Duplicate,
        "rejected" => {
            let error = r.error.unwrap_or_default();
            // Our own Worker writes "reason: detail"; keep the reason code when it is there.
            let reason =
                error.split_once(": ").map(|(r, _)| r).filter(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            Outcome::Rejected { reason: reason.unwrap_or("worker").to_owned(), error }
        }
        other => Outcome::Failed { error: format!("worker answered status {other:?}: {}", r.error.unwrap_or_default()) },
    }
}

/// Splits a group into requests under [`MAX_REQUEST_BYTES`] (one oversized message still goes alone).
fn chunks(items: &[Item]) -> Vec<&[Item]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let size = item.payload.len() + item.topic.len() + 16;
        if i > start && bytes + size > MAX_REQUEST_BYTES {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

pub use scs_protocol::http_ingest::{decode_batch, encode_batch};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Origin;

    #[test]
    fn chunks_respect_the_request_limit() {
        let dir = crate::store::test_support::TestDir::new("worker-chunks");
        let store = crate::store::Store::open(dir.path()).unwrap();
        let reg = crate::identity::Registry::open(store.path()).unwrap();
        let item = |n: usize| Item::decode("t".into(), vec![0; n], Origin::Mqtt, 0, &reg);
        let items = vec![item(4 << 20), item(4 << 20), item(10), item(10)];
        let c = chunks(&items);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn worker_answers_map_to_outcomes() {
        let r = |status: &str, error: Option<&str>| ItemResult {
            topic: "t".into(),
            seq: Some(1),
            status: status.into(),
            error: error.map(Into::into),
        };
        assert_eq!(outcome_of(r("stored", None)), Outcome::Stored);
        assert_eq!(outcome_of(r("duplicate", None)), Outcome::Duplicate);
        assert!(
            matches!(outcome_of(r("rejected", Some("malformed: x"))), Outcome::Rejected { reason, .. } if reason == "malformed")
        );
        assert!(matches!(outcome_of(r("weird", None)), Outcome::Failed { .. }));
    }
}
