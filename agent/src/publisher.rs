//! Moves queued messages to the transport with a bounded in-flight window.
//!
//! * Window: at most `window` messages published but not yet receipted. A receipt frees slots
//!   (it names many seqs at once, and the cloud group-commits), so the drain never runs one
//!   message at a time.
//! * Order: on each connection, messages queued after it came up ("live") go first; the backlog
//!   (queued before, e.g. while offline) is replayed oldest-first in the remaining slots, so a
//!   long backlog never delays fresh data.
//! * Reconnect: a new connection starts with an empty window and re-reads the outbox from the
//!   start, so everything unreceipted is sent again (the cloud deduplicates by (gateway, boot, seq)).
//! * A message without a receipt after `receipt_timeout` is published again (the cloud may have
//!   lost it between PUBACK and its commit); after three sends on one connection it is parked
//!   (still queued, out of the window) until the next connection, so one message the cloud never
//!   answers cannot stall everything behind it.
//!
//! The publisher never deletes anything: only [`Publisher::on_receipt`] does, through the queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scs_protocol::topics::topic;
use scs_protocol::{Receipt, TopicKind};

use crate::context::{AgentMetrics, Shutdown};
use crate::queue::{AckOutcome, Doorbell, Queue, QueueError};

#[derive(Debug, thiserror::Error)]
#[error("publish on {topic} failed: {reason}")]
pub struct SinkError {
    pub topic: String,
    pub reason: String,
}

/// Where published messages go (the MQTT client; a recorder in tests).
pub trait Sink: Send {
    /// Hands one QoS 1 message to the transport without blocking.
    fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), SinkError>;
}

#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    bell: Arc<Doorbell>,
    metrics: Arc<AgentMetrics>,
    gateway: String,
    window: usize,
    receipt_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    sends: u32,
}

/// Sends of one message on one connection without a receipt before it is parked: it leaves the
/// window (so it cannot block everything behind it) but stays queued and goes again on the next
/// connection. A message the cloud silently ignores must not stall the whole outbox.
const MAX_SENDS_PER_CONNECTION: u32 = 3;

#[derive(Default)]
struct State {
    sink: Option<Box<dyn Sink>>,
    /// seq -> when it was last published on this connection, and how often.
    inflight: BTreeMap<u64, Sent>,
    /// First seq queued after this connection came up; below it is backlog.
    live_from: u64,
    live_next: u64,
    backlog_next: u64,
    backlog_logged: bool,
}

impl Publisher {
    pub fn new(queue: Queue, metrics: Arc<AgentMetrics>, gateway: &str, window: usize, receipt_timeout: Duration) -> Publisher {
        Publisher {
            inner: Arc::new(Inner {
                bell: queue.doorbell(),
                queue,
                metrics,
                gateway: gateway.to_owned(),
                window: window.max(1),
                receipt_timeout,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection is up (subscriptions and status already requested on it): start sending.
    pub fn connected(&self, sink: Box<dyn Sink>) {
        let live_from = self.inner.queue.next_seq();
        let mut st = self.state();
        *st = State {
            sink: Some(sink),
            inflight: BTreeMap::new(),
            live_from,
            live_next: live_from,
            backlog_next: 0,
            backlog_logged: false,
        };
        let depth = self.inner.queue.stats().depth;
        drop(st);
        if depth > 0 {
            log::info!("connected: {depth} queued messages to (re)send, live first from seq {live_from}");
        }
        self.inner.bell.ring();
    }

    /// The connection is gone: nothing in flight any more (it will all be sent again).
    pub fn disconnected(&self) {
        let mut st = self.state();
        st.sink = None;
        st.inflight.clear();
    }

    /// Removes receipted seqs from the outbox (see `Queue::ack`) and frees their window slots.
    pub fn on_receipt(&self, r: &Receipt) -> Result<AckOutcome, QueueError> {
        let rejected: &[u64] = r.rejected.as_deref().unwrap_or(&[]);
        let out = self.inner.queue.ack(&r.accepted, rejected)?;
        if let Some(first) = rejected.first() {
            log::warn!(
                "cloud rejected {} message(s) of gateway {} for good: {} (first seq {first})",
                rejected.len(),
                self.inner.gateway,
                r.reason.as_deref().unwrap_or("no reason given"),
            );
        }
        {
            let mut st = self.state();
            for s in r.accepted.iter().chain(rejected) {
                st.inflight.remove(s);
            }
        }
        AgentMetrics::add(&self.inner.metrics.receipted, out.deleted);
        self.inner.bell.ring();
        Ok(out)
    }

    #[cfg(test)]
    pub fn inflight(&self) -> usize {
        self.state().inflight.len()
    }

    /// Fills the window: overdue re-sends, then live messages, then backlog. Returns how many
    /// messages were handed to the sink.
    pub fn pump(&self) -> Result<usize, QueueError> {
        let mut sent = 0usize;
        let result = {
            let mut guard = self.state();
            self.fill_window(&mut guard, &mut sent)
        };
        // Counted however the fill ended: a refused publish or a queue error part-way through does
        // not undo the messages already handed over.
        AgentMetrics::add(&self.inner.metrics.published, sent as u64);
        result.map(|()| sent)
    }

    /// The body of [`Publisher::pump`]; counts every message handed to the sink in `sent`.
    fn fill_window(&self, st: &mut State, sent: &mut usize) -> Result<(), QueueError> {
        let q = &self.inner.queue;
        let window = self.inner.window;
        let Some(sink) = st.sink.as_ref() else { return Ok(()) };
        let now = Instant::now();
        let topic_of = |kind: TopicKind| topic(&self.inner.gateway, kind);

        // 1. Re-send what waited too long for its receipt (still counted in the window).
        let overdue: Vec<(u64, u32)> = st
            .inflight
            .iter()
            .filter(|(_, s)| now.duration_since(s.at) >= self.inner.receipt_timeout)
            .map(|(seq, s)| (*seq, s.sends))
            .collect();
        if !overdue.is_empty() {
            log::info!("{} message(s) without receipt after {:?}: sending again", overdue.len(), self.inner.receipt_timeout);
        }
        for (seq, sends) in overdue {
            if sends >= MAX_SENDS_PER_CONNECTION {
                st.inflight.remove(&seq);
                log::warn!("seq {seq}: no receipt after {sends} sends; kept queued, parked until the next connection");
                continue;
            }
            match q.get(seq)? {
                None => {
                    st.inflight.remove(&seq); // receipted or dropped meanwhile
                }
                Some(m) => {
                    if sink.publish(&topic_of(m.kind), m.payload).is_err() {
                        return Ok(());
                    }
                    st.inflight.insert(seq, Sent { at: now, sends: sends + 1 });
                    *sent += 1;
                }
            }
        }

        // 2. Live messages, oldest first among them.
        let free = window.saturating_sub(st.inflight.len());
        if free > 0 {
            for m in q.read_range(st.live_next, u64::MAX, free)? {
                if sink.publish(&topic_of(m.kind), m.payload).is_err() {
                    return Ok(());
                }
                st.inflight.insert(m.seq, Sent { at: now, sends: 1 });
                st.live_next = m.seq + 1;
                *sent += 1;
            }
        }

        // 3. Backlog, oldest first, in whatever slots are left.
        let free = window.saturating_sub(st.inflight.len());
        if free > 0 && st.backlog_next < st.live_from {
            let batch = q.read_range(st.backlog_next, st.live_from, free)?;
            let complete = batch.len() < free;
            for m in batch {
                if sink.publish(&topic_of(m.kind), m.payload).is_err() {
                    return Ok(());
                }
                st.inflight.insert(m.seq, Sent { at: now, sends: 1 });
                st.backlog_next = m.seq + 1;
                *sent += 1;
            }
            if complete {
                st.backlog_next = st.live_from;
            }
        }
        if st.backlog_next >= st.live_from && !st.backlog_logged && st.live_from > 1 {
            st.backlog_logged = true;
            log::debug!("backlog below seq {} fully sent on this connection", st.live_from);
        }
        Ok(())
    }

    /// Publisher thread body: pump whenever the queue or the window changes, and at least twice
    /// a second so overdue re-sends happen without outside events.
    pub fn run(&self, shutdown: &Shutdown) {
        let mut last_err: Option<String> = None;
        while !shutdown.requested() {
            let seen = self.inner.bell.current();
            match self.pump() {
                Ok(_) => last_err = None,
                Err(e) => {
                    let msg = e.to_string();
                    if last_err.as_deref() != Some(&msg) {
                        log::error!("publisher: {msg}");
                    }
                    last_err = Some(msg);
                    shutdown.sleep(Duration::from_secs(1));
                }
            }
            // Receipted rows normally go with the next enqueue; this covers a queue that went quiet.
            if let Err(e) = self.inner.queue.flush_receipts_if_due() {
                log::warn!("publisher: {e}");
            }
            self.inner.bell.wait_past(seen, Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMode;
    use crate::queue::QueueOptions;
    use std::sync::Mutex as StdMutex;

    #[derive(Clone, Default)]
    struct Recorder(Arc<StdMutex<Vec<(String, u64)>>>);
    impl Sink for Recorder {
        fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), SinkError> {
            let seq = u64::from_le_bytes(payload[..8].try_into().unwrap());
            self.0.lock().unwrap().push((topic.to_owned(), seq));
            Ok(())
        }
    }
    impl Recorder {
        fn take(&self) -> Vec<u64> {
            std::mem::take(&mut *self.0.lock().unwrap()).into_iter().map(|(_, s)| s).collect()
        }
    }

    struct Fixture {
        dir: std::path::PathBuf,
        q: Queue,
        p: Publisher,
        metrics: Arc<AgentMetrics>,
    }
    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
    fn fixture(window: usize, timeout: Duration) -> Fixture {
        let dir = std::env::temp_dir().join(format!("scs-pub-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let q = Queue::open(&dir.join("agent.db"), QueueOptions { max_rows: 10_000, max_bytes: 1 << 30, sync: SyncMode::Normal })
            .unwrap();
        let metrics = Arc::new(AgentMetrics::default());
        let p = Publisher::new(q.clone(), metrics.clone(), "gw-1", window, timeout);
        Fixture { dir, q, p, metrics }
    }
    fn put(q: &Queue, kind: TopicKind) -> u64 {
        q.enqueue(kind, |seq| seq.to_le_bytes().to_vec()).unwrap()
    }
    fn receipt(seqs: &[u64]) -> Receipt {
        Receipt::accepted(seqs.to_vec())
    }

    #[test]
    fn live_first_then_backlog_oldest_first_within_window() {
        let f = fixture(4, Duration::from_secs(60));
        for _ in 0..6 {
            put(&f.q, TopicKind::Telemetry); // backlog 1..=6
        }
        let rec = Recorder::default();
        f.p.connected(Box::new(rec.clone()));
        put(&f.q, TopicKind::CommandUpdate); // live 7
        assert_eq!(f.p.pump().unwrap(), 4);
        assert_eq!(rec.take(), vec![7, 1, 2, 3]);
        assert_eq!(f.p.pump().unwrap(), 0, "window full");
        // a receipt for two frees two slots; a new live message jumps the backlog
        f.p.on_receipt(&receipt(&[7, 1])).unwrap();
        put(&f.q, TopicKind::Telemetry); // live 8
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![8, 4]);
        f.p.on_receipt(&receipt(&[2, 3, 4, 8])).unwrap();
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![5, 6]);
        f.p.on_receipt(&receipt(&[5, 6])).unwrap();
        assert_eq!(f.q.stats().depth, 0);
    }

    #[test]
    fn topics_follow_message_kind() {
        let f = fixture(8, Duration::from_secs(60));
        put(&f.q, TopicKind::Inventory);
        put(&f.q, TopicKind::CommandUpdate);
        let rec = Recorder::default();
        f.p.connected(Box::new(rec.clone()));
        f.p.pump().unwrap();
        let got = rec.0.lock().unwrap().clone();
        assert_eq!(got[0].0, "scs/v1/gw-1/up/inventory");
        assert_eq!(got[1].0, "scs/v1/gw-1/up/command");
    }

    #[test]
    fn reconnect_resends_everything_unreceipted() {
        let f = fixture(10, Duration::from_secs(60));
        for _ in 0..3 {
            put(&f.q, TopicKind::Telemetry);
        }
        let rec = Recorder::default();
        f.p.connected(Box::new(rec.clone()));
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![1, 2, 3]);
        f.p.on_receipt(&receipt(&[2])).unwrap();
        f.p.disconnected();
        assert_eq!(f.p.pump().unwrap(), 0, "nothing sent while disconnected");
        put(&f.q, TopicKind::Telemetry); // 4, queued while offline: backlog on the next connection
        f.p.connected(Box::new(rec.clone()));
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![1, 3, 4]);
    }

    #[test]
    fn overdue_messages_are_sent_again_and_missing_ones_forgotten() {
        let f = fixture(10, Duration::from_millis(30));
        put(&f.q, TopicKind::Telemetry);
        put(&f.q, TopicKind::Telemetry);
        let rec = Recorder::default();
        f.p.connected(Box::new(rec.clone()));
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![1, 2]);
        assert_eq!(f.p.pump().unwrap(), 0);
        // seq 1 disappears from the outbox behind the publisher's back (e.g. dropped as oldest)
        f.q.ack(&[1], &[]).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![2]);
        assert_eq!(f.p.inflight(), 1);
    }

    #[test]
    fn a_message_never_receipted_is_parked_and_frees_its_slot() {
        let f = fixture(1, Duration::from_millis(20));
        put(&f.q, TopicKind::Telemetry); // 1: the cloud never answers for it
        put(&f.q, TopicKind::Telemetry); // 2
        let rec = Recorder::default();
        f.p.connected(Box::new(rec.clone()));
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![1]);
        for _ in 0..MAX_SENDS_PER_CONNECTION {
            std::thread::sleep(Duration::from_millis(25));
            f.p.pump().unwrap();
        }
        // sent 3 times, then parked: seq 2 gets the slot; seq 1 is still queued
        assert_eq!(rec.take(), vec![1, 1, 2]);
        assert!(f.q.get(1).unwrap().is_some());
        // a new connection tries it again
        f.p.connected(Box::new(rec.clone()));
        f.p.pump().unwrap();
        assert_eq!(rec.take(), vec![1]);
    }

    #[test]
    fn rejected_seqs_are_deleted_and_counted() {
        let f = fixture(10, Duration::from_secs(60));
        put(&f.q, TopicKind::Telemetry);
        put(&f.q, TopicKind::Telemetry);
        let r = Receipt { v: 1, accepted: vec![1], rejected: Some(vec![2]), reason: Some("bad".into()) };
        let out = f.p.on_receipt(&r).unwrap();
        assert_eq!(out, AckOutcome { deleted: 2, rejected: 1 });
        assert_eq!(f.q.stats().rejected_total, 1);
    }

    /// Takes `ok` messages, then refuses every publish (the client's request queue is full).
    struct Choking {
        rec: Recorder,
        ok: Arc<StdMutex<usize>>,
    }
    impl Sink for Choking {
        fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), SinkError> {
            let mut ok = self.ok.lock().unwrap();
            if *ok == 0 {
                return Err(SinkError { topic: topic.to_owned(), reason: "request queue full".into() });
            }
            *ok -= 1;
            self.rec.publish(topic, payload)
        }
    }

    #[test]
    fn messages_sent_before_a_refused_publish_are_counted_on_every_path() {
        let f = fixture(10, Duration::from_millis(20));
        for _ in 0..4 {
            put(&f.q, TopicKind::Telemetry); // backlog 1..=4
        }
        let rec = Recorder::default();
        let ok = Arc::new(StdMutex::new(2));
        f.p.connected(Box::new(Choking { rec: rec.clone(), ok: ok.clone() }));
        put(&f.q, TopicKind::Telemetry); // live 5

        // Live path: 5 goes, then the backlog path: 1 goes, 2 is refused.
        assert_eq!(f.p.pump().unwrap(), 2);
        assert_eq!(rec.take(), vec![5, 1]);
        assert_eq!(AgentMetrics::get(&f.metrics.published), 2);

        // Live path refused part-way: 6 goes, 7 is refused.
        put(&f.q, TopicKind::Telemetry);
        put(&f.q, TopicKind::Telemetry);
        *ok.lock().unwrap() = 1;
        assert_eq!(f.p.pump().unwrap(), 1);
        assert_eq!(rec.take(), vec![6]);
        assert_eq!(AgentMetrics::get(&f.metrics.published), 3);

        // Re-send path refused part-way: 5, 1 and 6 are overdue; one re-send goes.
        std::thread::sleep(Duration::from_millis(30));
        *ok.lock().unwrap() = 1;
        assert_eq!(f.p.pump().unwrap(), 1);
        assert_eq!(rec.take(), vec![1]);
        assert_eq!(AgentMetrics::get(&f.metrics.published), 4);
    }
}
