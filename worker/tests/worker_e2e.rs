//! The Worker in workerd (`scripts/worker-dev`) behind a real shim and agent:
//! agent -> embedded broker -> shim (`--worker-url`) -> Worker -> Queue -> D1, read back through the
//! Worker's API; workerd killed mid-stream and started again on the same state: nothing lost, nothing
//! stored twice.
//!
//! Needs the tools of `scripts/install-worker-tools`. Without them the test says so loudly and passes,
//! unless `CI` is set, where it fails.

mod common;

use std::time::Duration;

use common::{gateway_seed, require_tools, WorkerDev};
use scs_testkit::{free_port, wait_for, wait_until, Agent, Shim, ShimOpts, TempDir};

/// Seqs of `gw` the Worker's D1 holds (read from workerd's local D1 file).
fn d1_seqs(w: &WorkerDev, gw: &str) -> Vec<i64> {
    let Ok(d1) = rusqlite::Connection::open(w.d1_file()) else { return Vec::new() };
    let Ok(mut q) = d1.prepare("SELECT seq FROM ingest_receipts WHERE gateway_id = ?1 ORDER BY seq") else { return Vec::new() };
    q.query_map([gw], |r| r.get(0)).map(|rows| rows.filter_map(Result::ok).collect()).unwrap_or_default()
}

fn stored_messages(w: &WorkerDev, gw: &str) -> Option<u64> {
    let r = w.api().try_get(&format!("/v1/gateways/{gw}/stats")).ok()?;
    (r.status == 200).then(|| r.json()["storedMessages"].as_u64()).flatten()
}

#[test]
fn agent_to_worker_through_the_shim_survives_a_workerd_kill() {
    if require_tools().is_none() {
        return;
    }
    let dir = TempDir::new("worker-e2e");
    let port = free_port();
    let shim =
        Shim::start(ShimOpts { args: vec!["--worker-url".into(), format!("http://127.0.0.1:{port}")], ..ShimOpts::default() });
    let gw = "gw-w1";
    let opts = shim.agent_opts(gw);
    let seed = dir.join("seed.sql");
    gateway_seed(&shim.db_path(), &seed);
    let logs = dir.join("worker-dev.log");
    let mut worker = WorkerDev::start(port, &dir.join("state"), &seed, &logs, true);

    // Auth before anything else.
    assert_eq!(worker.api().with_token(None).try_get("/v1/sensors").unwrap().status, 401);
    assert_eq!(worker.api().with_token(Some("wrong")).try_get("/v1/sensors").unwrap().status, 401);

    let mut agent = Agent::start(opts);
    let before =
        wait_for(Duration::from_secs(120), "5 messages stored in D1", || stored_messages(&worker, gw).filter(|n| *n >= 5));

    // Read back through the Worker.
    let sensors = worker.api().get_json("/v1/sensors");
    assert!(sensors.as_array().unwrap().iter().any(|s| s["id"] == gw && s["type"] == "EDGE_CONTROLLER"), "{sensors}");
    let m = worker.api().get_json(&format!("/v1/sensors/{gw}/metrics?limit=10"));
    assert!(m["count"].as_u64().unwrap() > 0, "{m}");

    // workerd dies mid-stream; the agent keeps sending into the shim, which gets no answers.
    worker.kill();
    std::thread::sleep(Duration::from_secs(3));
    worker.spawn(false);
    wait_for(Duration::from_secs(180), "the backlog stored after the restart", || {
        stored_messages(&worker, gw).filter(|n| *n >= before + 5)
    });
    // Everything the agent queued reaches D1. The agent always has a few batches in flight (the path
    // shim -> Worker -> Queue -> D1 takes longer than its interval), so kill it, note what its outbox
    // still holds (in flight, or receipted rows waiting for the next commit), start it again on the
    // same data dir, and wait for every one of them in D1.
    agent.kill();
    let left = scs_testkit::outbox_seqs(&agent.db_path());
    agent.start_again();
    let drained = wait_until(Duration::from_secs(120), || {
        let stored = d1_seqs(&worker, gw);
        left.iter().all(|s| stored.contains(&(*s as i64)))
    });
    agent.kill();
    assert!(drained, "queued seqs never stored: {left:?} vs D1 {:?}", d1_seqs(&worker, gw));
    worker.kill();
    // ...and D1 holds each seq exactly once, with no hole.
    let d1 = rusqlite::Connection::open(worker.d1_file()).unwrap();
    let seqs: Vec<i64> = d1
        .prepare("SELECT seq FROM ingest_receipts WHERE gateway_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map([gw], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let first = *seqs.first().unwrap();
    assert_eq!(seqs, (first..first + seqs.len() as i64).collect::<Vec<_>>(), "no seq lost");
    let unreceipted: Vec<u64> = left.iter().copied().filter(|s| !seqs.contains(&(*s as i64))).collect();
    assert!(unreceipted.is_empty(), "agent outbox holds seqs D1 never stored: {unreceipted:?}");
    let batches: i64 = d1
        .query_row("SELECT count(*) FROM ingest_receipts WHERE gateway_id = ?1 AND kind = 'telemetry'", [gw], |r| r.get(0))
        .unwrap();
    let distinct_ts: i64 = d1
        .query_row("SELECT count(DISTINCT ts) FROM metrics WHERE sensor_id = ?1 AND name = 'agent.queue_depth'", [gw], |r| {
            r.get(0)
        })
        .unwrap();
    let rows: i64 = d1
        .query_row("SELECT count(*) FROM metrics WHERE sensor_id = ?1 AND name = 'agent.queue_depth'", [gw], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, distinct_ts, "no sample stored twice");
    assert!(batches >= 10 && rows > 0, "{batches} batches, {rows} rows");
}
