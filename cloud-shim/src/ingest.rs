//! Group commit of uplink messages, from MQTT (the bridge) and from `POST /v1/ingest`.
//!
//! ```text
//! submissions ──► gatherer (async: batches, decodes) ──► backend thread (SQLite tx | Worker POST)
//!                                                              │ one outcome per message
//!                  completion (async: receipts, HTTP replies, counters) ◄──┘
//! ```
//! A receipt is published only after the backend reported the message stored (committed locally, or
//! answered `stored`/`duplicate` by the Worker). Store failures produce no receipt: the agent keeps the
//! message and sends it again, and the `(gateway, boot, seq)` key makes the retry harmless.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use scs_protocol::limits::MAX_RECEIPT_SEQS;
use scs_protocol::topics::topic;
use scs_protocol::{decode_uplink, encode, Receipt, TopicKind, Uplink};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::identity::{Registry, Signer};
use crate::rejection::Rejection;
use crate::stats::{Count, LogThrottle, Stats};

pub mod sqlite;
pub mod worker;

/// Messages per group at most (one SQLite transaction / one Worker request).
const MAX_GROUP_ITEMS: usize = 2048;
/// Payload bytes per group at most.
const MAX_GROUP_BYTES: usize = 6 * 1024 * 1024;
/// How long a small group waits for company before it is written.
const LINGER: Duration = Duration::from_millis(2);
/// Groups waiting for the backend; beyond this the gatherer (and so the MQTT bridge) waits.
const BACKEND_QUEUE: usize = 2;
/// Submissions waiting for the gatherer.
const SUBMIT_QUEUE: usize = 8192;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("ingest pipeline has stopped")]
    Closed,
    #[error("store failed: {0}")]
    StoreFailed(String),
}

/// Where a message came from; only MQTT messages are receipted over MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Mqtt,
    Http,
}

#[derive(Debug, Clone)]
pub enum Decoded {
    Valid { gateway: String, msg: Uplink },
    Invalid(Rejection),
}

/// One message on its way to the store.
#[derive(Debug, Clone)]
pub struct Item {
    pub topic: String,
    pub payload: Vec<u8>,
    pub received_at: i64,
    pub origin: Origin,
    pub decoded: Decoded,
}

impl Item {
    /// Verifies the signature of `payload` (a COSE_Sign1 by the gateway in `topic`, see
    /// [`crate::identity::verify_uplink`]) and decodes the message inside. A message that does not verify
    /// is refused with no receipt: a receipt naming a seq it claims would let a forger make the real
    /// gateway drop that seq.
    pub fn decode(topic: String, payload: Vec<u8>, origin: Origin, received_at: i64, registry: &Registry) -> Item {
        let inner = match crate::identity::verify_uplink(registry, &topic, &payload) {
            Ok(Some(inner)) => inner,
            // Not a gateway topic: the protocol decoder names the problem.
            Ok(None) => payload.as_slice(),
            Err(u) => {
                let decoded = Decoded::Invalid(Rejection { gateway: u.gateway, reason: u.reason, error: u.error, receipt: None });
                return Item { topic, payload, received_at, origin, decoded };
            }
        };
        let decoded = match decode_uplink(&topic, inner) {
            Ok((t, msg)) => match msg.boot_seq() {
                // SQLite integers are i64; a seq beyond that is no agent's counter.
                Some((boot, seq)) if i64::try_from(seq).is_err() => Decoded::Invalid(Rejection {
                    gateway: t.gateway,
                    reason: "seq_range",
                    error: format!("seq {seq} exceeds the store's range"),
                    receipt: Some((boot, seq)),
                }),
                _ => Decoded::Valid { gateway: t.gateway, msg },
            },
            Err(e) => Decoded::Invalid(Rejection::classify(&topic, inner, &e)),
        };
        Item { topic, payload, received_at, origin, decoded }
    }

    pub fn gateway(&self) -> &str {
        match &self.decoded {
            Decoded::Valid { gateway, .. } => gateway,
            Decoded::Invalid(r) => &r.gateway,
        }
    }

    /// `(boot, seq)` to name in a receipt, if the message is receipted.
    pub fn boot_seq(&self) -> Option<(u64, u64)> {
        match &self.decoded {
            Decoded::Valid { msg, .. } => msg.boot_seq(),
            Decoded::Invalid(r) => r.receipt,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Stored,
    /// Stored earlier (same gateway, boot and seq); nothing written now.
    Duplicate,
    /// Refused for good; `reason` is a rejection code (see [`Rejection`]).
    Rejected {
        reason: String,
        error: String,
    },
    /// Not stored (the store failed); no receipt, so the sender retries.
    Failed {
        error: String,
    },
}

/// Where groups are stored: the local SQLite writer or the Worker client.
pub trait Backend: Send + 'static {
    /// Stores a group; returns one outcome per item, in order.
    fn store(&mut self, items: &[Item]) -> Vec<Outcome>;

    /// A second backend for command updates, when a store's answer is slow enough that an update
    /// waiting behind a telemetry group would keep an operator waiting (the Worker answers a group only
    /// once its Queue consumer has committed it). The local SQLite writer has none: its groups take
    /// milliseconds, and one writer keeps its transactions simple.
    fn command_lane(&self) -> Option<Box<dyn Backend>> {
        None
    }
}

/// Per-message answer of `POST /v1/ingest`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemResult {
    pub topic: String,
    pub seq: Option<u64>,
    /// `stored`, `duplicate`, `rejected` (or `failed`, which the HTTP layer turns into a 503).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

enum Submission {
    Mqtt { topic: String, payload: Vec<u8> },
    Http { messages: Vec<(String, Vec<u8>)>, reply: oneshot::Sender<Vec<ItemResult>> },
}

struct Group {
    items: Vec<Item>,
    replies: Vec<(oneshot::Sender<Vec<ItemResult>>, Range<usize>)>,
}

/// Entry point of the pipeline, cheap to clone.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Submission>,
}

impl IngestHandle {
    /// Queues one MQTT message; waits while the pipeline is full (backpressure on the bridge).
    pub async fn submit_mqtt(&self, topic: String, payload: Vec<u8>) -> Result<(), IngestError> {
        self.tx.send(Submission::Mqtt { topic, payload }).await.map_err(|_| IngestError::Closed)
    }

    /// Stores a batch of raw messages (the HTTP ingest contract) and returns one result per message.
    pub async fn ingest_http(&self, messages: Vec<(String, Vec<u8>)>) -> Result<Vec<ItemResult>, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Submission::Http { messages, reply }).await.map_err(|_| IngestError::Closed)?;
        let results = rx.await.map_err(|_| IngestError::Closed)?;
        if let Some(failed) = results.iter().find(|r| r.status == "failed") {
            return Err(IngestError::StoreFailed(failed.error.clone().unwrap_or_default()));
        }
        Ok(results)
    }
}

/// Publishes signed receipts: the shim's MQTT client and the cloud key.
#[derive(Clone)]
pub struct ReceiptSender {
    pub client: AsyncClient,
    pub signer: Signer,
}

/// Starts the pipeline: the gatherer and completion tasks on the runtime, the backend on its own thread.
/// `receipts` publishes MQTT receipts (absent in tests that only use HTTP); `registry` holds the
/// gateways' public keys every uplink is verified against.
pub fn start(
    backend: Box<dyn Backend>,
    receipts: Option<ReceiptSender>,
    stats: Arc<Stats>,
    registry: Registry,
) -> Result<IngestHandle, std::io::Error> {
    let (tx, rx) = mpsc::channel(SUBMIT_QUEUE);
    let (group_tx, group_rx) = mpsc::channel::<Group>(BACKEND_QUEUE);
    let (done_tx, done_rx) = mpsc::channel::<(Group, Vec<Outcome>)>(BACKEND_QUEUE);
    let lane = match backend.command_lane() {
        Some(second) => {
            let (lane_tx, lane_rx) = mpsc::channel::<Group>(BACKEND_QUEUE);
            let done = done_tx.clone();
            std::thread::Builder::new().name("ingest-commands".into()).spawn(move || run_backend(second, lane_rx, done))?;
            Some(lane_tx)
        }
        None => None,
    };
    std::thread::Builder::new().name("ingest-store".into()).spawn(move || run_backend(backend, group_rx, done_tx))?;
    tokio::spawn(gather(rx, group_tx, lane, registry));
    tokio::spawn(complete(done_rx, receipts, stats));
    Ok(IngestHandle { tx })
}

fn add(group: &mut Group, bytes: &mut usize, s: Submission, registry: &Registry) {
    let now = now_ms();
    match s {
        Submission::Mqtt { topic, payload } => {
            *bytes += payload.len();
            group.items.push(Item::decode(topic, payload, Origin::Mqtt, now, registry));
        }
        Submission::Http { messages, reply } => {
            let start = group.items.len();
            for (topic, payload) in messages {
                *bytes += payload.len();
                group.items.push(Item::decode(topic, payload, Origin::Http, now, registry));
            }
            group.replies.push((reply, start..group.items.len()));
        }
    }
}

/// The group a submission joins: the command lane's for an MQTT command update when there is a lane.
struct Groups {
    main: Group,
    lane: Option<Group>,
    bytes: usize,
}

impl Groups {
    fn new(with_lane: bool) -> Groups {
        let group = || Group { items: Vec::new(), replies: Vec::new() };
        Groups { main: group(), lane: with_lane.then(group), bytes: 0 }
    }

    fn put(&mut self, s: Submission, registry: &Registry) {
        let is_update = matches!(&s, Submission::Mqtt { topic, .. } if topic.ends_with(TopicKind::CommandUpdate.suffix()));
        let to = match self.lane.as_mut() {
            Some(lane) if is_update => lane,
            _ => &mut self.main,
        };
        add(to, &mut self.bytes, s, registry);
    }

    fn full(&self) -> bool {
        self.main.items.len() + self.lane.as_ref().map_or(0, |l| l.items.len()) >= MAX_GROUP_ITEMS
            || self.bytes >= MAX_GROUP_BYTES
    }
}

async fn gather(
    mut rx: mpsc::Receiver<Submission>,
    group_tx: mpsc::Sender<Group>,
    lane_tx: Option<mpsc::Sender<Group>>,
    registry: Registry,
) {
    while let Some(first) = rx.recv().await {
        let mut groups = Groups::new(lane_tx.is_some());
        groups.put(first, &registry);
        // Take what is already waiting; while the backend is busy with the previous group this is
        // where messages pile up, so groups grow with load (group commit).
        let deadline = tokio::time::Instant::now() + LINGER;
        while !groups.full() {
            match rx.try_recv() {
                Ok(s) => groups.put(s, &registry),
                Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(s)) => groups.put(s, &registry),
                    Ok(None) | Err(_) => break,
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        // Command updates first: their lane never waits behind a slow telemetry group.
        if let (Some(tx), Some(lane)) = (lane_tx.as_ref(), groups.lane.filter(|l| !l.items.is_empty())) {
            if tx.send(lane).await.is_err() {
                log::error!("ingest command lane has stopped; ingest ends");
                return;
            }
        }
        if !groups.main.items.is_empty() && group_tx.send(groups.main).await.is_err() {
            log::error!("ingest backend has stopped; ingest ends");
            return;
        }
    }
}

fn run_backend(mut backend: Box<dyn Backend>, mut rx: mpsc::Receiver<Group>, done: mpsc::Sender<(Group, Vec<Outcome>)>) {
    while let Some(group) = rx.blocking_recv() {
        let mut outcomes = backend.store(&group.items);
        if outcomes.len() != group.items.len() {
            // A backend bug must not turn into receipts for data that was not stored.
            log::error!("ingest backend returned {} outcomes for {} messages", outcomes.len(), group.items.len());
            outcomes = vec![Outcome::Failed { error: "internal: outcome count mismatch".into() }; group.items.len()];
        }
        if done.blocking_send((group, outcomes)).is_err() {
            return;
        }
    }
}

/// Seqs of one gateway to name in receipts after a group.
#[derive(Default)]
struct PendingReceipt {
    accepted: Vec<u64>,
    rejected: Vec<u64>,
    /// Why the first rejected seq was refused (one reason per receipt).
    reason: Option<String>,
}

async fn complete(mut rx: mpsc::Receiver<(Group, Vec<Outcome>)>, receipts: Option<ReceiptSender>, stats: Arc<Stats>) {
    let mut throttle = LogThrottle::new(20, Duration::from_secs(60));
    let mut receipt_drops = LogThrottle::new(5, Duration::from_secs(60));
    while let Some((group, outcomes)) = rx.recv().await {
        let mut per_gw: BTreeMap<&str, PendingReceipt> = BTreeMap::new();
        for (item, outcome) in group.items.iter().zip(&outcomes) {
            let gw = item.gateway();
            match outcome {
                Outcome::Stored => stats.record(gw, Count::Stored),
                Outcome::Duplicate => stats.record(gw, Count::Duplicate),
                Outcome::Failed { error } => {
                    stats.record(gw, Count::Failed);
                    if throttle.allow() {
                        log::warn!("not stored (gateway {gw}, topic {}): {error}", item.topic);
                    }
                }
                Outcome::Rejected { reason, error } => {
                    stats.record(gw, Count::Rejected { reason, error, topic: &item.topic, at: item.received_at });
                    if throttle.allow() {
                        log::warn!("rejected {reason} message from gateway {gw} on {:.200}: {error:.300}", item.topic);
                    }
                }
            }
            if item.origin != Origin::Mqtt {
                continue;
            }
            let Some((_, seq)) = item.boot_seq() else { continue };
            let entry = per_gw.entry(gw).or_default();
            match outcome {
                Outcome::Stored | Outcome::Duplicate => entry.accepted.push(seq),
                // boot_seq() is only set for messages a rejected receipt may name (see Rejection::receipt).
                Outcome::Rejected { error, .. } => {
                    entry.rejected.push(seq);
                    entry.reason.get_or_insert_with(|| error.chars().take(200).collect());
                }
                Outcome::Failed { .. } => {}
            }
        }
        if let Some(sender) = &receipts {
            for (gw, pending) in per_gw {
                let t = topic(gw, TopicKind::Receipt);
                for r in receipts_for(pending) {
                    // try_: this task must never wait on the MQTT event loop, which may itself be waiting
                    // for ingest to make room (a cycle). A dropped receipt costs one re-send by the agent,
                    // which is receipted as a duplicate.
                    let signed = sender.signer.sign(&t, &encode(&r));
                    if let Err(e) = sender.client.try_publish(t.clone(), QoS::AtLeastOnce, false, signed) {
                        if receipt_drops.allow() {
                            log::warn!("receipt for {gw} not sent ({e}); the agent will re-send and be receipted then");
                        }
                    }
                }
            }
        }
        for (reply, range) in group.replies {
            let results = group.items[range.clone()].iter().zip(&outcomes[range]).map(|(i, o)| item_result(i, o)).collect();
            let _ = reply.send(results);
        }
    }
}

/// Receipts naming `p`'s seqs, each within the protocol's seq limit.
fn receipts_for(p: PendingReceipt) -> Vec<Receipt> {
    let mut out: Vec<Receipt> = p.accepted.chunks(MAX_RECEIPT_SEQS).map(|c| Receipt::accepted(c.to_vec())).collect();
    for chunk in p.rejected.chunks(MAX_RECEIPT_SEQS) {
        let mut r = Receipt::accepted(Vec::new());
        r.rejected = Some(chunk.to_vec());
        r.reason = p.reason.clone();
        out.push(r);
    }
    out
}

fn item_result(item: &Item, outcome: &Outcome) -> ItemResult {
    let seq = item.boot_seq().map(|(_, s)| s);
    let (status, error) = match outcome {
        Outcome::Stored => ("stored", None),
        Outcome::Duplicate => ("duplicate", None),
        Outcome::Rejected { reason, error } => ("rejected", Some(format!("{reason}: {error}"))),
        Outcome::Failed { error } => ("failed", Some(error.clone())),
    };
    ItemResult { topic: item.topic.clone(), seq, status: status.to_owned(), error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::topics::topic;
    use scs_protocol::TelemetryBatch;

    /// Answers every message with the same outcome and counts the groups it saw.
    struct Fixed(Outcome, Arc<std::sync::atomic::AtomicUsize>);

    impl Backend for Fixed {
        fn store(&mut self, items: &[Item]) -> Vec<Outcome> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            vec![self.0.clone(); items.len()]
        }
    }

    fn msg(seq: u64) -> (String, Vec<u8>) {
        let t = topic("gw-1", TopicKind::Telemetry);
        let key = crate::identity::test_support::key_for("gw-1");
        let signed = scs_protocol::cose::sign1(&key, b"gw-1", t.as_bytes(), &encode(&TelemetryBatch::new("gw-1", 1, seq, 1)));
        (t, signed)
    }

    /// A registry (in a temp store) where gw-1 is provisioned with its test key.
    fn registry() -> (crate::store::test_support::TestDir, Registry) {
        let dir = crate::store::test_support::TestDir::new("ingest-reg");
        let store = crate::store::Store::open(dir.path()).unwrap();
        crate::identity::test_support::provision(&mut store.connect().unwrap(), "gw-1");
        let reg = Registry::open(store.path()).unwrap();
        (dir, reg)
    }

    #[tokio::test]
    async fn http_results_follow_the_backend_and_failures_are_errors() {
        let groups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (_dir, reg) = registry();
        let h = start(Box::new(Fixed(Outcome::Stored, groups.clone())), None, Arc::new(Stats::default()), reg.clone()).unwrap();
        let r = h.ingest_http(vec![msg(1), msg(2)]).await.unwrap();
        assert_eq!(
            r.iter().map(|r| (r.seq, r.status.as_str())).collect::<Vec<_>>(),
            vec![(Some(1), "stored"), (Some(2), "stored")]
        );

        let failing =
            start(Box::new(Fixed(Outcome::Failed { error: "disk full".into() }, groups)), None, Arc::new(Stats::default()), reg)
                .unwrap();
        match failing.ingest_http(vec![msg(3)]).await {
            Err(IngestError::StoreFailed(e)) => assert_eq!(e, "disk full"),
            other => panic!("a failed store must not look stored: {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_submissions_share_groups() {
        let groups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stats = Arc::new(Stats::default());
        let (_dir, reg) = registry();
        let h = start(Box::new(Fixed(Outcome::Duplicate, groups.clone())), None, stats.clone(), reg).unwrap();
        let calls: Vec<_> = (0..50u64)
            .map(|i| {
                let h = h.clone();
                async move { h.ingest_http(vec![msg(i)]).await }
            })
            .collect();
        for r in futures_join(calls).await {
            assert_eq!(r.unwrap()[0].status, "duplicate");
        }
        assert_eq!(stats.get("gw-1").duplicates, 50);
        assert!(groups.load(std::sync::atomic::Ordering::SeqCst) <= 50);
    }

    /// Minimal join_all without another crate.
    async fn futures_join<F: std::future::Future + Send + 'static>(fs: Vec<F>) -> Vec<F::Output>
    where
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    #[test]
    fn command_updates_take_the_lane_when_there_is_one() {
        let (_dir, reg) = registry();
        let mqtt = |kind| Submission::Mqtt { topic: topic("gw-1", kind), payload: vec![1, 2, 3] };
        let http = || Submission::Http { messages: vec![msg(1)], reply: oneshot::channel().0 };
        let mut with = Groups::new(true);
        for s in [mqtt(TopicKind::Telemetry), mqtt(TopicKind::CommandUpdate), http(), mqtt(TopicKind::CommandUpdate)] {
            with.put(s, &reg);
        }
        let lane = with.lane.as_ref().unwrap();
        assert_eq!((with.main.items.len(), lane.items.len()), (2, 2));
        assert!(lane.items.iter().all(|i| i.topic.ends_with("up/command")));
        let mut without = Groups::new(false);
        without.put(mqtt(TopicKind::CommandUpdate), &reg);
        assert_eq!((without.main.items.len(), without.lane.is_none()), (1, true));
    }

    #[test]
    fn receipts_are_split_at_the_protocol_limit() {
        let p = PendingReceipt {
            accepted: (0..(MAX_RECEIPT_SEQS as u64 + 5)).collect(),
            rejected: vec![7],
            reason: Some("bad".into()),
        };
        let r = receipts_for(p);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].accepted.len(), MAX_RECEIPT_SEQS);
        assert_eq!(r[1].accepted.len(), 5);
        assert_eq!((r[2].rejected.clone(), r[2].reason.as_deref()), (Some(vec![7]), Some("bad")));
        for x in &r {
            x.validate().unwrap();
        }
    }

    #[test]
    fn seq_beyond_the_store_range_is_rejected_with_a_receipt() {
        let dir = crate::store::test_support::TestDir::new("ingest-seq");
        let store = crate::store::Store::open(dir.path()).unwrap();
        let (t, _) = msg(0);
        let item = crate::identity::test_support::signed_item(
            &mut store.connect().unwrap(),
            &t,
            &encode(&TelemetryBatch::new("gw-1", 1, u64::MAX, 1)),
            0,
        );
        match &item.decoded {
            Decoded::Invalid(r) => assert_eq!((r.reason, r.receipt), ("seq_range", Some((1, u64::MAX)))),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unsigned_forged_and_unknown_uplinks_are_refused_without_receipt() {
        let (_dir, reg) = registry();
        let t = topic("gw-1", TopicKind::Telemetry);
        let plain = encode(&TelemetryBatch::new("gw-1", 1, 5, 1));
        let reason = |payload: Vec<u8>, topic: &str| match Item::decode(topic.to_owned(), payload, Origin::Http, 0, &reg).decoded
        {
            Decoded::Invalid(r) => (r.reason, r.receipt),
            Decoded::Valid { .. } => ("valid", None),
        };
        assert_eq!(reason(plain.clone(), &t), ("signature", None), "unsigned");
        let evil = scs_protocol::cose::sign1(&crate::identity::test_support::key_for("evil"), b"gw-1", t.as_bytes(), &plain);
        assert_eq!(reason(evil, &t), ("signature", None), "signed by another key under gw-1's kid");
        let good = scs_protocol::cose::sign1(&crate::identity::test_support::key_for("gw-1"), b"gw-1", t.as_bytes(), &plain);
        assert_eq!(reason(good.clone(), &t), ("valid", None));
        let inv = topic("gw-1", TopicKind::Inventory);
        assert_eq!(reason(good.clone(), &inv), ("signature", None), "replayed on another topic");
        let mut tampered = good.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(reason(tampered, &t), ("signature", None));
        assert_eq!(reason(good, &topic("gw-9", TopicKind::Telemetry)).0, "unknown_gateway");
    }
}
