//! The durable outbox: every receipted uplink message (telemetry, inventory, command updates) is
//! committed here before anything tries to send it, and deleted only when the cloud's `Receipt`
//! names its seq.
//!
//! Tables (in `{data_dir}/agent.db`, owned by this module):
//! * `outbox(seq PRIMARY KEY, kind, created_ms, size, payload)` — encoded messages, oldest = lowest seq.
//! * `meta(key PRIMARY KEY, value)` — `next_seq` (with max(outbox.seq) + 1: never goes back, survives
//!   restarts and an emptied outbox), the pending
//!   gap (`gap_dropped`, `gap_first`, `gap_last`) and lifetime counters (`dropped_total`, `rejected_total`).
//!
//! Durability. An enqueue is one `BEGIN IMMEDIATE … COMMIT` on a connection whose `synchronous`
//! level is configurable (`queue.sync`), default FULL:
//! * NORMAL in WAL mode: the commit is written to the WAL (OS page cache) but fsynced only at
//!   checkpoints. It survives a crash or `kill -9` of the agent, but a power cut can roll back the
//!   last commits since the previous checkpoint — including the `next_seq` bump, so seqs that were
//!   already published could be reused after the reboot.
//! * FULL: the WAL is fsynced at every commit, so an accepted message and the seq counter survive
//!   a power cut too. Cost: one fsync per enqueue — roughly 1–20 ms on eMMC/SD, i.e. a few hundred
//!   enqueues per second at most, against ~20–50k/s with NORMAL.
//!
//! A gateway enqueues about one batch per interval plus a few command updates (well under 10/s), and
//! field gateways lose power routinely, so FULL is the default: its cost is invisible at that rate and
//! it is the only level that keeps "accepted means committed" true across power loss.
//! Deletions (receipts) ride on the enqueue commits or run on a second connection at NORMAL: losing
//! a deletion to a power cut only means the message is sent once more and the cloud, idempotent on
//! (gateway, boot, seq), ignores it.
//!
//! Flash wear. Gateways run for years on SD cards and eMMC, so the bytes each message costs on disk
//! matter as much as its durability. Every commit appends each page it touches to the WAL whole (FULL
//! also fsyncs, so the next commit starts on a fresh block); the checkpoint later copies the latest
//! version of each page into the database file. So the cost is pages per commit, and commits:
//! * the outbox is lean: seq is the rowid, no other index, no `meta` write per enqueue;
//! * pages are 1 KiB (`db::DEFAULT_PAGE_SIZE`): a small batch touches one small leaf page;
//! * a receipt writes nothing by itself: the receipted rows are hidden at once (reads, counters) and
//!   deleted by the next enqueue's transaction, whose leaf, freelist and header pages they mostly
//!   share, so a batch costs one commit instead of two. A quiet queue deletes them after
//!   [`RECEIPT_LINGER`] (publisher tick), a drained backlog every [`RECEIPT_BATCH`] rows, a clean stop
//!   at once. A crash forgets pending deletions: those messages are sent once more and the cloud,
//!   idempotent on (gateway, boot, seq), ignores them. Nothing accepted is ever at risk, since enqueue
//!   commits stay FULL.
//!
//! Measured with `/proc/PID/io` write_bytes, against the outbox as earlier agents kept it (4 KiB
//! pages, each receipt its own commit). The queue alone (`flash` below), per message: 430-byte batch
//! 16.5 KB before, 5.2 KB now; 3.5 KB batch 16.5 KB before, 9.4 KB now. The real agent with a shim
//! receipting (`scripts/bench --only flash`): 64 devices at 10 s, 41.6 KB before and 21.5 KB now per
//! 5.6 KB batch (3.9x the payload, about 190 MB a day); 1 device every second, 17.1 KB before and
//! 5.6 KB now per 506-byte batch (about 490 MB a day; one fsynced 4 KiB block per commit is the
//! floor). At 10 s a part of the rest is paid per second, not per batch (the mmapped `-shm` index is
//! written back and dirtied again). write_bytes counts whole page-cache folios when they turn dirty,
//! so it is a proxy for flash writes, not the device's own count.
//!
//! Bounds. `max_rows` and `max_bytes` cap the outbox; an enqueue past them drops the oldest rows in
//! the same transaction, counts them, and records the dropped seq range as the pending gap, which the
//! next telemetry batch carries (taken in that batch's own transaction, so it is reported once).
//! Known limit: if that batch is itself dropped later, its gap range goes with it; the cloud still
//! sees the hole in the seqs, only without the agent's declaration.
//!
//! A failed write (disk full, I/O error) loses the message being enqueued. Its seq is then skipped and
//! kept as a lost range in memory (the database cannot take it), which the next telemetry batch that
//! commits declares in its gap together with any dropped rows. If the agent stops before such a batch
//! commits, the seq is reused after the restart: it was never sent, so no one saw it.
//!
//! Authenticity. With a [`Sealer`] (the gateway's key), every payload is signed as a COSE_Sign1 for its
//! topic inside the enqueue transaction, so the outbox stores and re-sends exactly the signed bytes.
//! Rows queued unsigned by an older agent are signed when read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use scs_protocol::limits::MAX_UPLINK_BYTES;
use scs_protocol::telemetry::Gap;
use scs_protocol::TopicKind;

use crate::config::SyncMode;
use crate::identity::Sealer;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue database {path}: {source}")]
    Db { path: PathBuf, source: rusqlite::Error },
    #[error("message seq {seq} of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { seq: u64, size: usize, limit: usize },
    #[error("queue row seq {seq} has unknown kind code {code}")]
    BadKind { seq: u64, code: i64 },
}

impl QueueError {
    /// The database file is damaged (not a database, or corrupt pages), not merely busy or missing.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            QueueError::Db { source: rusqlite::Error::SqliteFailure(e, _), .. }
                if matches!(e.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        )
    }
}

/// Bounds and durability of the outbox.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub sync: SyncMode,
}

impl From<&crate::config::QueueConfig> for QueueOptions {
    fn from(c: &crate::config::QueueConfig) -> Self {
        QueueOptions { max_rows: c.max_rows, max_bytes: c.max_bytes, sync: c.sync }
    }
}

/// One queued message as read back for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub kind: TopicKind,
    pub payload: Vec<u8>,
}

/// Counters for the agent-health collector and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    pub next_seq: u64,
    pub dropped_total: u64,
    pub rejected_total: u64,
}

/// What a receipt did to the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckOutcome {
    /// Rows deleted (accepted + rejected that were still queued).
    pub deleted: u64,
    /// Of those, rows the cloud refused for good.
    pub rejected: u64,
}

/// A wake-up counter: waiters sleep until it moves past what they last saw. The queue rings it on
/// every enqueue; the transport rings it when a receipt or a new connection frees window slots.
#[derive(Default)]
pub struct Doorbell {
    gen: Mutex<u64>,
    cv: Condvar,
}

impl Doorbell {
    pub fn ring(&self) {
        let mut g = self.gen.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }

    pub fn current(&self) -> u64 {
        *self.gen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the counter differs from `seen` or `timeout` passes; returns the counter.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.gen.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self.cv.wait_timeout_while(g, timeout, |g| *g == seen).unwrap_or_else(|e| e.into_inner());
        *g
    }
}

/// Handle to the outbox; cheap to clone and shared by every thread that enqueues.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    opts: QueueOptions,
    write: Mutex<WriteSide>,
    read: Mutex<Connection>,
    doorbell: Arc<Doorbell>,
    sealer: Option<Sealer>,
    depth: AtomicU64,
    bytes: AtomicU64,
    next_seq: AtomicU64,
    dropped_total: AtomicU64,
    rejected_total: AtomicU64,
}

/// Both writing connections behind one lock, so the in-memory row/byte counts always match the table.
struct WriteSide {
    enq: Connection,
    ack: Connection,
    next_seq: u64,
    depth: u64,
    bytes: u64,
    /// Seqs of messages lost to failed writes, not yet declared in a committed telemetry gap.
    lost: Option<Gap>,
    /// Receipted rows not deleted yet: gone for every reader and counter, deleted by the next
    /// enqueue's transaction or by [`Queue::flush_receipts`].
    receipted: BTreeSet<u64>,
    /// When the oldest of them was receipted.
    receipted_since: Option<Instant>,
    /// `rejected_total` changed since it was last written.
    rejected_dirty: bool,
    /// How long receipted rows may wait for an enqueue; zero deletes each receipt at once.
    linger: Duration,
}

/// Receipted rows wait at most this long for an enqueue to delete them with its own commit
/// (`queue.receipt_linger_secs`). Longer than the default interval (10 s), so at the usual rates
/// every deletion rides on the next batch.
pub const RECEIPT_LINGER: Duration = Duration::from_secs(crate::config::DEFAULT_RECEIPT_LINGER_SECS);
/// ... and at most this many (a backlog being drained is deleted in transactions of this size).
pub const RECEIPT_BATCH: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock rolls back the open transaction (it is dropped), so the data
    // is consistent; continuing is better than taking the whole agent down.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<i64>, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()
}

fn meta_set(conn: &Connection, key: &str, value: i64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Queue {
    /// Opens (creating if needed) the outbox in the database at `path`; payloads are stored as given.
    #[cfg(test)]
    pub fn open(path: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
        Queue::open_sealed(path, opts, None)
    }

    /// Like [`Queue::open`]; every payload is signed by `sealer` before it is stored.
    pub fn open_sealed(path: &Path, opts: QueueOptions, sealer: Option<Sealer>) -> Result<Queue, QueueError> {
        let err = |source| QueueError::Db { path: path.to_owned(), source };
        let enq = crate::db::open(path).map_err(err)?;
        enq.execute_batch(SCHEMA).map_err(err)?;
        let sync = match opts.sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        enq.execute_batch(&format!("PRAGMA synchronous={sync};")).map_err(err)?;
        let ack = crate::db::open(path).map_err(err)?;
        let read = crate::db::open(path).map_err(err)?;

        let stored_next = meta_get(&enq, "next_seq").map_err(err)?.map(to_u64).unwrap_or(1);
        let (max_seq, depth, bytes): (Option<i64>, i64, i64) = enq
            .query_row("SELECT max(seq), count(*), coalesce(sum(size), 0) FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(err)?;
        // The counter never goes back: it also stays above anything still queued.
        let next_seq = stored_next.max(max_seq.map(to_u64).unwrap_or(0) + 1).max(1);
        let dropped_total = meta_get(&enq, "dropped_total").map_err(err)?.map(to_u64).unwrap_or(0);
        let rejected_total = meta_get(&enq, "rejected_total").map_err(err)?.map(to_u64).unwrap_or(0);
        let (depth, bytes) = (to_u64(depth), to_u64(bytes));
        Ok(Queue {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                opts,
                write: Mutex::new(WriteSide {
                    enq,
                    ack,
                    next_seq,
                    depth,
                    bytes,
                    lost: None,
                    receipted: BTreeSet::new(),
                    receipted_since: None,
                    rejected_dirty: false,
                    linger: RECEIPT_LINGER,
                }),
                read: Mutex::new(read),
                doorbell: Arc::new(Doorbell::default()),
                sealer,
                depth: AtomicU64::new(depth),
                bytes: AtomicU64::new(bytes),
                next_seq: AtomicU64::new(next_seq),
                dropped_total: AtomicU64::new(dropped_total),
                rejected_total: AtomicU64::new(rejected_total),
            }),
        })
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> QueueError + '_ {
        move |source| QueueError::Db { path: self.inner.path.clone(), source }
    }

    /// Takes the next seq, calls `build(seq)` to encode the message, and commits it, all in one
    /// transaction. Returns the seq once committed; then wakes the publisher.
    pub fn enqueue(&self, kind: TopicKind, build: impl FnOnce(u64) -> Vec<u8>) -> Result<u64, QueueError> {
        self.enqueue_inner(kind, false, |seq, _| build(seq))
    }

    /// Like [`Queue::enqueue`] for a telemetry batch: `build` also receives the pending gap (seqs
    /// dropped since the last batch that carried one), which is cleared in the same transaction.
    pub fn enqueue_telemetry(&self, build: impl FnOnce(u64, Option<Gap>) -> Vec<u8>) -> Result<u64, QueueError> {
        self.enqueue_inner(TopicKind::Telemetry, true, build)
    }

    fn enqueue_inner(
        &self,
        kind: TopicKind,
        take_gap: bool,
        build: impl FnOnce(u64, Option<Gap>) -> Vec<u8>,
    ) -> Result<u64, QueueError> {
        let err = self.db_err();
        let opts = self.inner.opts;
        let sealer = self.inner.sealer.as_ref();
        let mut guard = lock(&self.inner.write);
        let w = &mut *guard;
        let seq = w.next_seq;
        let lost = if take_gap { w.lost } else { None };
        let written = (|| -> Result<(u64, u64, u64), QueueError> {
            let tx = w.enq.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
            // Receipted rows go in this commit: their pages are mostly the ones this insert touches
            // anyway (the last leaf, the freelist, page 1), so the receipt costs no write of its own.
            // No `meta.next_seq` needed: the row inserted below is the newest.
            delete_seqs(&tx, &w.receipted).map_err(&err)?;
            if w.rejected_dirty {
                meta_set(&tx, "rejected_total", self.inner.rejected_total.load(Ordering::Relaxed) as i64).map_err(&err)?;
            }
            let stored_gap = if take_gap { take_pending_gap(&tx).map_err(&err)? } else { None };
            let payload = build(seq, merge_gap(stored_gap, lost));
            if payload.len() > MAX_UPLINK_BYTES {
                return Err(QueueError::TooLarge { seq, size: payload.len(), limit: MAX_UPLINK_BYTES });
            }
            let payload = match sealer {
                Some(s) => s.seal(kind, payload),
                None => payload,
            };
            let size = payload.len();
            if size as u64 > opts.max_bytes {
                return Err(QueueError::TooLarge { seq, size, limit: opts.max_bytes as usize });
            }
            tx.prepare_cached("INSERT INTO outbox (seq, kind, created_ms, size, payload) VALUES (?1, ?2, ?3, ?4, ?5)")
                .and_then(|mut st| {
                    st.execute(params![seq as i64, kind.code(), crate::clock::now_ms() as i64, size as i64, payload])
                })
                .map_err(&err)?;
            // `next_seq` in meta is not written here: while this row exists, max(seq) + 1 already says
            // it (open() takes the larger of the two), and every deletion that could remove the highest
            // row (receipts; drop-oldest never removes the new row) records next_seq in its transaction.
            // One statement less per enqueue.

            let mut depth = w.depth + 1;
            let mut bytes = w.bytes + size as u64;
            let mut dropped = 0u64;
            if depth > opts.max_rows || bytes > opts.max_bytes {
                let (n, freed) = drop_oldest(&tx, seq, depth, bytes, opts).map_err(&err)?;
                depth -= n;
                bytes -= freed;
                dropped = n;
            }
            tx.commit().map_err(&err)?;
            Ok((depth, bytes, dropped))
        })();
        let (depth, bytes, dropped) = match written {
            Ok(v) => v,
            Err(e @ QueueError::Db { .. }) => {
                // The caller's message is gone; skip its seq and declare it in the next telemetry gap.
                w.lost = merge_gap(w.lost, Some(Gap { dropped: 1, first_seq: seq, last_seq: seq }));
                w.next_seq = seq + 1;
                drop(guard);
                self.inner.next_seq.store(seq + 1, Ordering::Relaxed);
                self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "outbox write failed: {} message seq {seq} lost (reported as a gap in the next telemetry batch)",
                    kind.suffix()
                );
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if take_gap {
            w.lost = None;
        }
        w.receipted.clear();
        w.receipted_since = None;
        w.rejected_dirty = false;
        w.next_seq = seq + 1;
        w.depth = depth;
        w.bytes = bytes;
        drop(guard);
        self.inner.next_seq.store(seq + 1, Ordering::Relaxed);
        self.inner.depth.store(depth, Ordering::Relaxed);
        self.inner.bytes.store(bytes, Ordering::Relaxed);
        if dropped > 0 {
            self.inner.dropped_total.fetch_add(dropped, Ordering::Relaxed);
            log::warn!("outbox full: dropped the {dropped} oldest messages (reported as a gap in the next telemetry batch)");
        }
        self.inner.doorbell.ring();
        Ok(seq)
    }

    /// A row as it must go on the wire: rows queued unsigned by an older agent are signed now.
    fn sealed(&self, mut q: Queued) -> Queued {
        if let Some(s) = self.inner.sealer.as_ref().filter(|s| s.signs()) {
            if !Sealer::is_sealed(&q.payload) {
                q.payload = s.seal(q.kind, std::mem::take(&mut q.payload));
            }
        }
        q
    }

    /// Up to `limit` messages with `from <= seq < below`, oldest first.
    pub fn read_range(&self, from: u64, below: u64, limit: usize) -> Result<Vec<Queued>, QueueError> {
        if from >= below || limit == 0 {
            return Ok(Vec::new());
        }
        let err = self.db_err();
        // Receipted rows still on disk are skipped; reading that many more keeps `limit` rows.
        let gone: BTreeSet<u64> = lock(&self.inner.write).receipted.range(from..below).copied().collect();
        let conn = lock(&self.inner.read);
        let mut st = conn
            .prepare_cached("SELECT seq, kind, payload FROM outbox WHERE seq >= ?1 AND seq < ?2 ORDER BY seq LIMIT ?3")
            .map_err(&err)?;
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        let fetch = i64::try_from(limit.saturating_add(gone.len())).unwrap_or(i64::MAX);
        let rows = st
            .query_map(params![from as i64, below, fetch], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, code, payload) = row.map_err(&err)?;
            if gone.contains(&to_u64(seq)) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(self.sealed(queued(seq, code, payload)?));
        }
        Ok(out)
    }

    /// One message by seq, if still queued.
    pub fn get(&self, seq: u64) -> Result<Option<Queued>, QueueError> {
        if lock(&self.inner.write).receipted.contains(&seq) {
            return Ok(None);
        }
        let err = self.db_err();
        let conn = lock(&self.inner.read);
        let row = conn
            .prepare_cached("SELECT kind, payload FROM outbox WHERE seq = ?1")
            .and_then(|mut st| st.query_row([seq as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).optional())
            .map_err(&err)?;
        row.map(|(code, payload)| queued(seq as i64, code, payload).map(|q| self.sealed(q))).transpose()
    }

    /// Applies a receipt: every named seq still queued is gone from then on (reads, counters) and
    /// deleted by the next enqueue's transaction, or by a transaction of its own once
    /// [`RECEIPT_BATCH`] rows or [`RECEIPT_LINGER`] have accumulated, or when the queue closes.
    /// Rejected seqs (poison messages the cloud refuses for good) go too, and are counted.
    ///
    /// Losing a deletion to a crash only means the message is sent once more, and the cloud,
    /// idempotent on (gateway, boot, seq), receipts it again and stores nothing.
    pub fn ack(&self, accepted: &[u64], rejected: &[u64]) -> Result<AckOutcome, QueueError> {
        if accepted.is_empty() && rejected.is_empty() {
            return Ok(AckOutcome::default());
        }
        let err = self.db_err();
        let mut guard = lock(&self.inner.write);
        let w = &mut *guard;
        let mut out = AckOutcome::default();
        let mut freed = 0u64;
        {
            let mut size_of = w.ack.prepare_cached("SELECT size FROM outbox WHERE seq = ?1").map_err(&err)?;
            for (seqs, is_rejected) in [(accepted, false), (rejected, true)] {
                for &seq in seqs {
                    let Ok(key) = i64::try_from(seq) else { continue };
                    if w.receipted.contains(&seq) {
                        continue;
                    }
                    if let Some(size) = size_of.query_row([key], |r| r.get::<_, i64>(0)).optional().map_err(&err)? {
                        w.receipted.insert(seq);
                        out.deleted += 1;
                        freed += to_u64(size);
                        if is_rejected {
                            out.rejected += 1;
                        }
                    }
                }
            }
        }
        if out.deleted > 0 && w.receipted_since.is_none() {
            w.receipted_since = Some(Instant::now());
        }
        self.inner.rejected_total.fetch_add(out.rejected, Ordering::Relaxed);
        w.rejected_dirty |= out.rejected > 0;
        w.depth = w.depth.saturating_sub(out.deleted);
        w.bytes = w.bytes.saturating_sub(freed);
        self.inner.depth.store(w.depth, Ordering::Relaxed);
        self.inner.bytes.store(w.bytes, Ordering::Relaxed);
        if w.receipted.len() >= RECEIPT_BATCH || w.linger.is_zero() {
            self.delete_receipted(w)?;
        }
        Ok(out)
    }

    /// Deletes receipted rows in a transaction of their own if they have waited [`RECEIPT_LINGER`]
    /// (no enqueue came to take them). The publisher calls it on its tick.
    pub fn flush_receipts_if_due(&self) -> Result<(), QueueError> {
        let mut guard = lock(&self.inner.write);
        match guard.receipted_since {
            Some(t) if t.elapsed() >= guard.linger => self.delete_receipted(&mut guard),
            _ => Ok(()),
        }
    }

    /// How long receipted rows may wait for the next enqueue to delete them (default
    /// [`RECEIPT_LINGER`]); zero deletes each receipt in a transaction of its own, as earlier agents did.
    pub fn set_receipt_linger(&self, linger: Duration) {
        lock(&self.inner.write).linger = linger;
    }

    /// Deletes every receipted row now, in one transaction.
    pub fn flush_receipts(&self) -> Result<(), QueueError> {
        self.delete_receipted(&mut lock(&self.inner.write))
    }

    fn delete_receipted(&self, w: &mut WriteSide) -> Result<(), QueueError> {
        commit_receipted(w, self.inner.rejected_total.load(Ordering::Relaxed)).map_err(self.db_err())
    }

    pub fn stats(&self) -> QueueStats {
        let i = &self.inner;
        QueueStats {
            depth: i.depth.load(Ordering::Relaxed),
            bytes: i.bytes.load(Ordering::Relaxed),
            next_seq: i.next_seq.load(Ordering::Relaxed),
            dropped_total: i.dropped_total.load(Ordering::Relaxed),
            rejected_total: i.rejected_total.load(Ordering::Relaxed),
        }
    }

    /// The seq the next enqueue will get; everything below it is committed (or already gone).
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq.load(Ordering::Relaxed)
    }

    /// Rung on every enqueue; the publisher waits on it.
    pub fn doorbell(&self) -> Arc<Doorbell> {
        self.inner.doorbell.clone()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A clean stop leaves no receipted row behind (a crash leaves them to be sent once more).
        let w = self.write.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = commit_receipted(w, self.rejected_total.load(Ordering::Relaxed)) {
            log::warn!("outbox {}: receipted rows not deleted at close (they will be sent again): {e}", self.path.display());
        }
    }
}

/// Deletes the receipted rows in a transaction of their own (sync NORMAL, the `ack` connection).
fn commit_receipted(w: &mut WriteSide, rejected_total: u64) -> Result<(), rusqlite::Error> {
    if w.receipted.is_empty() && !w.rejected_dirty {
        return Ok(());
    }
    let tx = w.ack.transaction_with_behavior(TransactionBehavior::Immediate)?;
    delete_seqs(&tx, &w.receipted)?;
    // Keeps the counter once the rows that carried it are gone (see enqueue_inner).
    meta_set(&tx, "next_seq", w.next_seq as i64)?;
    if w.rejected_dirty {
        meta_set(&tx, "rejected_total", rejected_total as i64)?;
    }
    tx.commit()?;
    w.receipted.clear();
    w.receipted_since = None;
    w.rejected_dirty = false;
    Ok(())
}

/// Deletes the rows `seqs` (receipted ones) inside the caller's transaction.
fn delete_seqs(tx: &Connection, seqs: &BTreeSet<u64>) -> Result<(), rusqlite::Error> {
    if seqs.is_empty() {
        return Ok(());
    }
    let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
    for &seq in seqs {
        if let Ok(seq) = i64::try_from(seq) {
            del.execute([seq])?;
        }
    }
    Ok(())
}

fn queued(seq: i64, code: i64, payload: Vec<u8>) -> Result<Queued, QueueError> {
    let seq = to_u64(seq);
    let kind = u8::try_from(code).ok().and_then(TopicKind::from_code).ok_or(QueueError::BadKind { seq, code })?;
    Ok(Queued { seq, kind, payload })
}

/// One gap covering both (counts added, seq range widened).
fn merge_gap(a: Option<Gap>, b: Option<Gap>) -> Option<Gap> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Gap {
            dropped: a.dropped + b.dropped,
            first_seq: a.first_seq.min(b.first_seq),
            last_seq: a.last_seq.max(b.last_seq),
        }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Reads and clears the pending gap inside the caller's transaction.
fn take_pending_gap(tx: &Connection) -> Result<Option<Gap>, rusqlite::Error> {
    let dropped = meta_get(tx, "gap_dropped")?.map(to_u64).unwrap_or(0);
    if dropped == 0 {
        return Ok(None);
    }
    let first = meta_get(tx, "gap_first")?.map(to_u64).unwrap_or(0);
    let last = meta_get(tx, "gap_last")?.map(to_u64).unwrap_or(first);
    tx.execute("DELETE FROM meta WHERE key IN ('gap_dropped', 'gap_first', 'gap_last')", [])?;
    Ok(Some(Gap { dropped, first_seq: first, last_seq: last.max(first) }))
}

/// Deletes the oldest rows (never `keep`, the row just inserted) until the outbox is within its
/// bounds; records them in the pending gap. Returns (rows dropped, bytes freed).
fn drop_oldest(tx: &Connection, keep: u64, depth: u64, bytes: u64, opts: QueueOptions) -> Result<(u64, u64), rusqlite::Error> {
    let mut victims: Vec<(i64, u64)> = Vec::new();
    let (mut d, mut b) = (depth, bytes);
    {
        // Rows are read lazily, oldest first, and reading stops as soon as the bounds hold.
        let mut st = tx.prepare_cached("SELECT seq, size FROM outbox WHERE seq < ?1 ORDER BY seq")?;
        let mut rows = st.query([keep as i64])?;
        while d > opts.max_rows || b > opts.max_bytes {
            let Some(row) = rows.next()? else { break };
            let size = to_u64(row.get(1)?);
            victims.push((row.get(0)?, size));
            d -= 1;
            b = b.saturating_sub(size);
        }
    }
    if victims.is_empty() {
        return Ok((0, 0));
    }
    let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
    let mut freed = 0;
    for &(seq, size) in &victims {
        del.execute([seq])?;
        freed += size;
    }
    let n = victims.len() as u64;
    let (Some(&(first, _)), Some(&(last, _))) = (victims.first(), victims.last()) else { return Ok((0, 0)) };
    let (first, last) = (to_u64(first), to_u64(last));
    let pending = meta_get(tx, "gap_dropped")?.map(to_u64).unwrap_or(0);
    let gap_first = if pending > 0 { meta_get(tx, "gap_first")?.map(to_u64).unwrap_or(first).min(first) } else { first };
    let gap_last = if pending > 0 { meta_get(tx, "gap_last")?.map(to_u64).unwrap_or(last).max(last) } else { last };
    meta_set(tx, "gap_dropped", (pending + n) as i64)?;
    meta_set(tx, "gap_first", gap_first as i64)?;
    meta_set(tx, "gap_last", gap_last as i64)?;
    let total = meta_get(tx, "dropped_total")?.map(to_u64).unwrap_or(0);
    meta_set(tx, "dropped_total", (total + n) as i64)?;
    Ok((n, freed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::telemetry::TelemetryBatch;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("scs-queue-{tag}-{}-{}", std::process::id(), crate::clock::random_u64()));
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn db(&self) -> PathBuf {
            self.0.join("agent.db")
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opts(max_rows: u64, max_bytes: u64) -> QueueOptions {
        QueueOptions { max_rows, max_bytes, sync: SyncMode::Normal }
    }

    fn put(q: &Queue, n: usize) -> u64 {
        q.enqueue(TopicKind::Inventory, |seq| {
            let mut v = seq.to_le_bytes().to_vec();
            v.resize(n, 0xAB);
            v
        })
        .unwrap()
    }

    #[test]
    fn seqs_are_monotonic_across_reopen_and_empty_queue() {
        let t = Tmp::new("mono");
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        assert_eq!(put(&q, 10), 1);
        assert_eq!(put(&q, 10), 2);
        assert_eq!(put(&q, 10), 3);
        // everything receipted: the table is empty, but the counter must not restart
        assert_eq!(q.ack(&[1, 2, 3], &[]).unwrap().deleted, 3);
        assert_eq!(q.stats().depth, 0);
        drop(q);
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        assert_eq!(q.next_seq(), 4);
        assert_eq!(put(&q, 10), 4);
    }

    #[test]
    fn nothing_is_deleted_without_a_receipt_and_receipts_delete() {
        let t = Tmp::new("ack");
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        for _ in 0..5 {
            put(&q, 100);
        }
        let all = q.read_range(0, u64::MAX, 100).unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(all[0].kind, TopicKind::Inventory);
        assert_eq!(q.stats().bytes, 500);
        let out = q.ack(&[2, 4, 99], &[5]).unwrap();
        assert_eq!(out, AckOutcome { deleted: 3, rejected: 1 });
        // a duplicate receipt changes nothing
        assert_eq!(q.ack(&[2], &[5]).unwrap(), AckOutcome::default());
        let left: Vec<u64> = q.read_range(0, u64::MAX, 100).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(left, vec![1, 3]);
        let s = q.stats();
        assert_eq!((s.depth, s.bytes, s.rejected_total), (2, 200, 1));
        assert!(q.get(3).unwrap().is_some());
        assert!(q.get(2).unwrap().is_none());
        drop(q);
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        let s = q.stats();
        assert_eq!((s.depth, s.bytes, s.rejected_total), (2, 200, 1));
    }

    /// Seqs in the file as another process sees it.
    fn on_disk(path: &Path) -> Vec<u64> {
        let c = Connection::open(path).unwrap();
        let mut st = c.prepare("SELECT seq FROM outbox ORDER BY seq").unwrap();
        st.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|s| s.unwrap() as u64).collect()
    }

    #[test]
    fn receipted_rows_go_with_the_next_enqueue_and_only_the_named_ones() {
        let t = Tmp::new("fold");
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        for _ in 0..5 {
            put(&q, 100);
        }
        assert_eq!(q.ack(&[2, 4, 99], &[5]).unwrap(), AckOutcome { deleted: 3, rejected: 1 });
        // Gone for readers and counters at once; still in the file until the next commit.
        let seqs = |q: &Queue| q.read_range(0, u64::MAX, 100).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&q), vec![1, 3]);
        assert_eq!(q.read_range(0, u64::MAX, 1).unwrap().first().map(|m| m.seq), Some(1));
        assert_eq!(q.read_range(2, u64::MAX, 1).unwrap().first().map(|m| m.seq), Some(3), "limit counts live rows only");
        assert!(q.get(4).unwrap().is_none() && q.get(3).unwrap().is_some());
        assert_eq!((q.stats().depth, q.stats().bytes, q.stats().rejected_total), (2, 200, 1));
        assert_eq!(on_disk(&t.db()), vec![1, 2, 3, 4, 5]);
        // A repeated receipt counts nothing twice.
        assert_eq!(q.ack(&[2, 4], &[5]).unwrap(), AckOutcome::default());
        let six = put(&q, 100);
        assert_eq!(on_disk(&t.db()), vec![1, 3, six]);
        assert_eq!(q.ack(&[six], &[]).unwrap().deleted, 1);
        assert_eq!(on_disk(&t.db()), vec![1, 3, six]);
        // Closing deletes what is left and keeps the counters.
        drop(q);
        assert_eq!(on_disk(&t.db()), vec![1, 3]);
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        assert_eq!((q.stats().depth, q.stats().rejected_total, q.next_seq()), (2, 1, six + 1));
    }

    #[test]
    fn a_drained_backlog_is_deleted_in_batches_and_a_quiet_queue_after_the_linger() {
        let t = Tmp::new("batch");
        let q = Queue::open(&t.db(), opts(10_000, 1 << 30)).unwrap();
        let n = RECEIPT_BATCH as u64 + 10;
        for _ in 0..n {
            put(&q, 20);
        }
        let first: Vec<u64> = (1..RECEIPT_BATCH as u64).collect();
        q.ack(&first, &[]).unwrap();
        assert_eq!(on_disk(&t.db()).len() as u64, n, "below the batch size nothing is written yet");
        q.ack(&[RECEIPT_BATCH as u64], &[]).unwrap();
        assert_eq!(on_disk(&t.db()), (RECEIPT_BATCH as u64 + 1..=n).collect::<Vec<_>>());
        // Everything receipted and no enqueue coming: the publisher's tick deletes them after the linger.
        let rest: Vec<u64> = (RECEIPT_BATCH as u64 + 1..=n).collect();
        q.ack(&rest, &[]).unwrap();
        q.flush_receipts_if_due().unwrap();
        assert_eq!(on_disk(&t.db()).len(), 10, "not due yet");
        lock(&q.inner.write).receipted_since = Instant::now().checked_sub(RECEIPT_LINGER);
        q.flush_receipts_if_due().unwrap();
        assert!(on_disk(&t.db()).is_empty());
        assert_eq!(q.stats().depth, 0);
        // The counter survived the rows that carried it.
        drop(q);
        assert_eq!(Queue::open(&t.db(), opts(10_000, 1 << 30)).unwrap().next_seq(), n + 1);
    }

    #[test]
    fn zero_linger_deletes_each_receipt_at_once() {
        let t = Tmp::new("linger0");
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        q.set_receipt_linger(Duration::ZERO);
        let (a, b) = (put(&q, 10), put(&q, 10));
        q.ack(&[a], &[]).unwrap();
        assert_eq!(on_disk(&t.db()), vec![b]);
    }

    #[test]
    fn read_range_respects_bounds_and_limit() {
        let t = Tmp::new("range");
        let q = Queue::open(&t.db(), opts(100, 1 << 30)).unwrap();
        for _ in 0..10 {
            put(&q, 8);
        }
        let seqs = |v: Vec<Queued>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(q.read_range(3, 7, 100).unwrap()), vec![3, 4, 5, 6]);
        assert_eq!(seqs(q.read_range(3, 7, 2).unwrap()), vec![3, 4]);
        assert!(q.read_range(7, 7, 10).unwrap().is_empty());
    }

    #[test]
    fn row_bound_drops_oldest_and_reports_gap_once() {
        let t = Tmp::new("rows");
        let q = Queue::open(&t.db(), opts(3, 1 << 30)).unwrap();
        for _ in 0..5 {
            put(&q, 10);
        }
        let left: Vec<u64> = q.read_range(0, u64::MAX, 100).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(left, vec![3, 4, 5]);
        assert_eq!(q.stats().dropped_total, 2);
        assert_eq!(q.stats().depth, 3);
        let mut seen = None;
        q.enqueue_telemetry(|seq, gap| {
            seen = gap;
            minicbor::to_vec(TelemetryBatch::new("gw", 1, seq, 0)).unwrap()
        })
        .unwrap();
        // telemetry at seq 6 pushed out seq 3 after the gap {1,2} was taken
        assert_eq!(seen, Some(Gap { dropped: 2, first_seq: 1, last_seq: 2 }));
        let mut again = None;
        q.enqueue_telemetry(|seq, gap| {
            again = gap;
            minicbor::to_vec(TelemetryBatch::new("gw", 1, seq, 0)).unwrap()
        })
        .unwrap();
        // seq 7 took the gap {3} (dropped by seq 6), then pushed out seq 4 itself
        assert_eq!(again, Some(Gap { dropped: 1, first_seq: 3, last_seq: 3 }));
        drop(q);
        // the counters and the pending gap {4} survive a reopen
        let q = Queue::open(&t.db(), opts(3, 1 << 30)).unwrap();
        assert_eq!(q.stats().dropped_total, 4);
        assert_eq!(q.ack(&[6, 7], &[]).unwrap().deleted, 2);
        let take = |q: &Queue| {
            let mut got = None;
            q.enqueue_telemetry(|seq, gap| {
                got = gap;
                minicbor::to_vec(TelemetryBatch::new("gw", 1, seq, 0)).unwrap()
            })
            .unwrap();
            got
        };
        assert_eq!(take(&q), Some(Gap { dropped: 1, first_seq: 4, last_seq: 4 }));
        // reported once: rows 5, 8 + 9 fit, nothing new dropped
        assert_eq!(take(&q), None);
        assert_eq!(q.stats().dropped_total, 4);
    }

    #[test]
    fn byte_bound_drops_oldest_never_the_new_message() {
        let t = Tmp::new("bytes");
        let q = Queue::open(&t.db(), opts(1000, 300 * 1024)).unwrap();
        for _ in 0..10 {
            put(&q, 20 * 1024);
        }
        assert_eq!(q.stats().depth, 10);
        // a 250 KiB message forces out all but 2 of the 20 KiB ones
        let big = put(&q, 250 * 1024);
        let left: Vec<u64> = q.read_range(0, u64::MAX, 100).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(left, vec![9, 10, big]);
        let s = q.stats();
        assert_eq!(s.bytes, 2 * 20 * 1024 + 250 * 1024);
        assert!(s.bytes <= 300 * 1024);
        assert_eq!(s.dropped_total, 8);
    }

    #[test]
    fn oversized_message_is_refused_without_consuming_a_seq() {
        let t = Tmp::new("big");
        let q = Queue::open(&t.db(), opts(10, 1 << 30)).unwrap();
        let r = q.enqueue(TopicKind::Telemetry, |_| vec![0; MAX_UPLINK_BYTES + 1]);
        assert!(matches!(r, Err(QueueError::TooLarge { seq: 1, .. })));
        assert_eq!(put(&q, 1), 1);
    }

    /// Caps the enqueue connection's database at its current size, like a full disk (`None` lifts it).
    fn cap_db(q: &Queue, cap: bool) {
        let w = lock(&q.inner.write);
        let pages: i64 = w.enq.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let limit = if cap { pages } else { 1 << 30 };
        let _: i64 = w.enq.query_row(&format!("PRAGMA max_page_count = {limit}"), [], |r| r.get(0)).unwrap();
    }

    #[test]
    fn failed_write_loses_the_message_but_the_next_batch_declares_it() {
        let t = Tmp::new("diskfull");
        let q = Queue::open(&t.db(), opts(1000, 1 << 30)).unwrap();
        let first = q.enqueue(TopicKind::Inventory, |_| vec![1; 10]).unwrap();
        cap_db(&q, true);
        // Big enough to need new pages: the write fails as on a full disk.
        let big = || vec![7u8; 200 * 1024];
        let e1 = q.enqueue_telemetry(|_, _| big()).unwrap_err();
        assert!(matches!(e1, QueueError::Db { .. }), "{e1}");
        assert!(q.enqueue(TopicKind::CommandUpdate, |_| big()).is_err());
        assert_eq!(q.stats().depth, 1);
        cap_db(&q, false);
        // The next telemetry batch that commits carries both lost seqs as its gap.
        let mut seen = None;
        let seq = q
            .enqueue_telemetry(|_, gap| {
                seen = gap;
                vec![3; 10]
            })
            .unwrap();
        assert_eq!(seen, Some(Gap { dropped: 2, first_seq: first + 1, last_seq: first + 2 }));
        assert_eq!(seq, first + 3, "the lost seqs are not reused");
        // Reported once.
        let mut again = Some(Gap { dropped: 9, first_seq: 9, last_seq: 9 });
        q.enqueue_telemetry(|_, gap| {
            again = gap;
            vec![4; 10]
        })
        .unwrap();
        assert_eq!(again, None);
        // A batch that fails while carrying the gap keeps it for the next one, with its own seq added.
        cap_db(&q, true);
        assert!(q.enqueue(TopicKind::Inventory, |_| big()).is_err());
        let lost_seq = q.next_seq() - 1;
        assert!(q.enqueue_telemetry(|_, _| big()).is_err());
        cap_db(&q, false);
        let mut carried = None;
        q.enqueue_telemetry(|_, gap| {
            carried = gap;
            vec![5; 10]
        })
        .unwrap();
        assert_eq!(carried, Some(Gap { dropped: 2, first_seq: lost_seq, last_seq: lost_seq + 1 }));
    }

    #[test]
    fn sealed_queue_stores_signed_bytes_and_signs_legacy_rows_on_read() {
        use scs_protocol::cose;
        let t = Tmp::new("sealed");
        // A row queued by an older, unsigned agent.
        let plain = Queue::open(&t.db(), opts(1000, 1 << 30)).unwrap();
        let legacy = plain.enqueue(TopicKind::Inventory, |_| b"\xa0".to_vec()).unwrap();
        drop(plain);
        let (key, _) = cose::SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        let sealer = crate::identity::Sealer::for_key("gw-1", std::sync::Arc::new(key));
        let q = Queue::open_sealed(&t.db(), opts(1000, 1 << 30), Some(sealer)).unwrap();
        let seq = q.enqueue_telemetry(|_, _| b"\xa1\x00\x01".to_vec()).unwrap();
        let raw: Vec<u8> =
            lock(&q.inner.read).query_row("SELECT payload FROM outbox WHERE seq = ?1", [seq as i64], |r| r.get(0)).unwrap();
        let topic = scs_protocol::topics::topic("gw-1", TopicKind::Telemetry);
        assert_eq!(cose::verify1(&raw, topic.as_bytes(), |_| Some(vk)).unwrap().payload, b"\xa1\x00\x01");
        assert_eq!(q.get(seq).unwrap().unwrap().payload, raw, "the stored bytes are sent as they are");
        let old = q.get(legacy).unwrap().unwrap();
        let inv = scs_protocol::topics::topic("gw-1", TopicKind::Inventory);
        assert_eq!(cose::verify1(&old.payload, inv.as_bytes(), |_| Some(vk)).unwrap().payload, b"\xa0");
        let both = q.read_range(0, u64::MAX, 10).unwrap();
        assert!(both.iter().all(|m| crate::identity::Sealer::is_sealed(&m.payload)));
    }

    #[test]
    fn doorbell_wakes_waiters() {
        let t = Tmp::new("bell");
        let q = Queue::open(&t.db(), opts(10, 1 << 30)).unwrap();
        let bell = q.doorbell();
        let seen = bell.current();
        let q2 = q.clone();
        let h = std::thread::spawn(move || put(&q2, 1));
        let now = bell.wait_past(seen, Duration::from_secs(10));
        assert_ne!(now, seen);
        h.join().unwrap();
    }
}

/// Enqueue throughput, FULL vs NORMAL vs a raw batched insert on the same disk. Figures, not a
/// pass/fail check: `cargo test -p scs-agent --release -- --ignored enqueue_throughput --nocapture`.
#[cfg(test)]
mod throughput {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn enqueue_throughput() {
        let dir = std::env::var_os("SCS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let n = 2000u64;
        let payload = vec![0x5Au8; 2048];
        let mut rates = Vec::new();
        for sync in [SyncMode::Full, SyncMode::Normal] {
            let p = dir.join(format!("scs-enq-{}-{:?}.db", std::process::id(), sync));
            let q = Queue::open(&p, QueueOptions { max_rows: 1_000_000, max_bytes: 1 << 34, sync }).unwrap();
            let t = Instant::now();
            for _ in 0..n {
                q.enqueue(TopicKind::Telemetry, |_| payload.clone()).unwrap();
            }
            rates.push((format!("{sync:?}"), n as f64 / t.elapsed().as_secs_f64()));
            drop(q);
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
            }
        }
        let p = dir.join(format!("scs-raw-{}.db", std::process::id()));
        let mut c = crate::db::open(&p).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        let t = Instant::now();
        let tx = c.transaction().unwrap();
        for seq in 1..=n as i64 {
            tx.execute(
                "INSERT INTO outbox (seq, kind, created_ms, size, payload) VALUES (?1, 1, 0, 2048, ?2)",
                params![seq, payload],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let raw = n as f64 / t.elapsed().as_secs_f64();
        drop(c);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
        for (name, r) in rates {
            println!("enqueue sync={name}: {r:.0}/s, ratio to raw batched insert ({raw:.0}/s): {:.3}", r / raw);
        }
    }
}

/// Bytes the queue makes the kernel write per message, from `/proc/self/io` write_bytes: one enqueue
/// (sync FULL) and its receipt per cycle, checkpoints included, for a 1-device and a 64-device batch
/// size, by page size; `deferred` is what the queue does, `immediate` deletes each receipt in its own
/// transaction as earlier agents did. Figures, not a pass/fail check:
/// `cargo test -p scs-agent --bin scs-agent --release -- --ignored queue::flash:: --nocapture`.
#[cfg(test)]
mod flash {
    use super::*;

    fn write_bytes() -> u64 {
        let io = std::fs::read_to_string("/proc/self/io").unwrap();
        io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).unwrap().trim().parse().unwrap()
    }

    /// Creates the database with `page_size` first, as an older agent (4096) or this one left it.
    fn precreate(p: &Path, page_size: u32) {
        let c = Connection::open(p).unwrap();
        c.execute_batch(&format!("PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL;")).unwrap();
        c.execute_batch(SCHEMA).unwrap();
    }

    #[test]
    #[ignore]
    fn bytes_written_per_message() {
        let dir = std::env::var_os("SCS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let cycles: u64 = std::env::var("SCS_BENCH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        for payload in [430usize, 3500] {
            for page_size in [4096u32, 1024] {
                for immediate in [true, false] {
                    let p = dir.join(format!("scs-flash-{}-{page_size}-{payload}.db", std::process::id()));
                    precreate(&p, page_size);
                    let opts = QueueOptions { max_rows: 1_000_000, max_bytes: 1 << 34, sync: SyncMode::Full };
                    let q = Queue::open(&p, opts).unwrap();
                    if immediate {
                        q.set_receipt_linger(Duration::ZERO);
                    }
                    let before = write_bytes();
                    for _ in 0..cycles {
                        let seq = q.enqueue(TopicKind::Telemetry, |seq| {
                            let mut v = seq.to_le_bytes().to_vec();
                            v.resize(payload, 0x5A);
                            v
                        });
                        q.ack(&[seq.unwrap()], &[]).unwrap();
                    }
                    let per = (write_bytes() - before) as f64 / cycles as f64;
                    let mode = if immediate { "immediate" } else { "deferred" };
                    println!(
                        "BENCH queue_flash payload={payload} page_size={page_size} receipts={mode} bytes_per_message={per:.0} \
                         ratio={:.2}",
                        per / payload as f64
                    );
                    drop(q);
                    for ext in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
                    }
                }
            }
        }
    }
}

/// kill -9 of a process that is enqueueing, receipting and checkpointing: after every kill, reopening
/// finds every message whose enqueue had returned (unless its receipt had started), none whose
/// receipt had returned, a counter above everything accepted, and an intact file. The writer is this
/// test binary again (`child`), killed at varying points.
#[cfg(test)]
mod crash {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::BufRead;

    const DB_ENV: &str = "SCS_QUEUE_CRASH_DB";

    /// The writer: enqueues batches of growing size, receipts the older half now and then, and
    /// checkpoints every few pages, printing `A seq` once an enqueue returned, `d seq` before a
    /// receipt and `D seq` once a later commit (an enqueue or a flush) has deleted it.
    #[test]
    #[ignore]
    fn child() {
        let Some(db) = std::env::var_os(DB_ENV) else { return };
        let q =
            Queue::open(Path::new(&db), QueueOptions { max_rows: 1_000_000, max_bytes: 1 << 34, sync: SyncMode::Full }).unwrap();
        lock(&q.inner.write).enq.execute_batch("PRAGMA wal_autocheckpoint=16;").unwrap();
        let mut out = std::io::stdout().lock();
        let mut queued = Vec::new();
        let mut deleted_by_next = Vec::new();
        for i in 0u64.. {
            let seq = q.enqueue(TopicKind::Telemetry, |seq| vec![(seq % 251) as u8; 100 + (i as usize * 37) % 5000]).unwrap();
            std::io::Write::write_all(&mut out, format!("A {seq}\n").as_bytes()).unwrap();
            queued.push(seq);
            if i % 3 == 2 {
                let half: Vec<u64> = queued.drain(..queued.len() / 2).collect();
                for s in &half {
                    std::io::Write::write_all(&mut out, format!("d {s}\n").as_bytes()).unwrap();
                }
                q.ack(&half, &[]).unwrap();
                if i % 2 == 0 {
                    q.flush_receipts().unwrap();
                    for s in &half {
                        std::io::Write::write_all(&mut out, format!("D {s}\n").as_bytes()).unwrap();
                    }
                } else {
                    deleted_by_next.extend(half);
                }
            } else {
                for s in deleted_by_next.drain(..) {
                    std::io::Write::write_all(&mut out, format!("D {s}\n").as_bytes()).unwrap();
                }
            }
        }
    }

    #[test]
    fn kill_9_while_enqueueing_receipting_and_checkpointing_loses_nothing_accepted() {
        let dir = std::env::temp_dir().join(format!("scs-queue-crash-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("agent.db");
        let (mut accepted, mut receipting, mut receipted) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for round in 0..6u64 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "queue::crash::child", "--ignored", "--nocapture", "--test-threads=1"])
                .env(DB_ENV, &db)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let reader =
                std::thread::spawn(move || std::io::BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
            std::thread::sleep(Duration::from_millis(300 + round * 170));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let mut last_accepted = 0;
            for line in reader.join().unwrap() {
                let Some((op, seq)) = line.split_once(' ') else { continue };
                let Ok(seq) = seq.parse::<u64>() else { continue };
                match op {
                    "A" => {
                        accepted.insert(seq);
                        last_accepted = last_accepted.max(seq);
                    }
                    "d" => {
                        receipting.insert(seq);
                    }
                    "D" => {
                        receipted.insert(seq);
                    }
                    _ => {}
                }
            }
            assert!(last_accepted > 0, "round {round}: the writer accepted nothing before the kill");

            let q = Queue::open(&db, QueueOptions { max_rows: 1_000_000, max_bytes: 1 << 34, sync: SyncMode::Full }).unwrap();
            let ok: String = lock(&q.inner.read).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok", "round {round}");
            let present: BTreeSet<u64> = q.read_range(0, u64::MAX, usize::MAX >> 1).unwrap().iter().map(|m| m.seq).collect();
            let lost: Vec<&u64> = accepted.iter().filter(|s| !receipting.contains(s) && !present.contains(s)).collect();
            assert!(lost.is_empty(), "round {round}: accepted messages lost: {lost:?}");
            let back: Vec<&u64> = receipted.iter().filter(|s| present.contains(s)).collect();
            assert!(back.is_empty(), "round {round}: receipted messages came back: {back:?}");
            assert!(q.next_seq() > last_accepted, "round {round}: seq counter went back to {}", q.next_seq());
            for m in q.read_range(0, u64::MAX, usize::MAX >> 1).unwrap() {
                assert!(m.payload.iter().all(|b| *b == (m.seq % 251) as u8), "round {round}: seq {} damaged", m.seq);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
