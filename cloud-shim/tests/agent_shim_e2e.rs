//! The real agent through the real shim: kill -9 the agent repeatedly and the shim once while data
//! flows; every batch the agent committed reaches the store exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use scs_testkit::{outbox_seqs, wait_until, Agent, Mosquitto, Shim, ShimOpts};

const T: Duration = Duration::from_secs(30);

fn store_conn(shim: &Shim) -> rusqlite::Connection {
    let conn =
        rusqlite::Connection::open_with_flags(shim.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open scs.db");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn
}

fn stored_seqs(shim: &Shim, gw: &str) -> BTreeSet<u64> {
    let conn = store_conn(shim);
    let mut st = conn.prepare("SELECT seq FROM ingest_receipts WHERE gateway_id = ?1").expect("query");
    st.query_map([gw], |r| r.get::<_, i64>(0)).expect("rows").map(|r| r.expect("seq") as u64).collect()
}

/// Metric rows that appear more than once (same sensor, name, label and time): replays stored twice.
fn duplicate_rows(shim: &Shim, gw: &str) -> i64 {
    store_conn(shim)
        .query_row(
            "SELECT count(*) FROM (SELECT 1 FROM metrics WHERE gateway_id = ?1
             GROUP BY sensor_id, name, label, ts HAVING count(*) > 1)",
            [gw],
            |r| r.get(0),
        )
        .expect("duplicate query")
}

fn exactly_once_through_kills(shim: &mut Shim, broker_url: &str, gw: &str) {
    // Provisioned on the shim; the bundle names the broker the shim uses (`broker_url`).
    let opts = shim.agent_opts(gw);
    assert_eq!(opts.broker, broker_url);
    let mut agent = Agent::start(opts);
    let db = agent.db_path();
    let mut seen = BTreeSet::new();
    let sample = |seen: &mut BTreeSet<u64>| seen.extend(outbox_seqs(&db));
    assert!(wait_until(T, || stored_seqs(shim, gw).len() >= 2), "agent data reaches the store:\n{}", agent.logs());
    for _ in 0..3 {
        sample(&mut seen);
        agent.kill9();
        sample(&mut seen);
        agent.start_again();
        std::thread::sleep(Duration::from_millis(1200));
        sample(&mut seen);
    }
    shim.kill9();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        sample(&mut seen);
    }
    agent.kill9();
    shim.start_again();
    shim.wait_ready(T);
    // Messages published while no shim was subscribed are gone from an external broker (clean session);
    // the agent re-sends them on its receipt timeout, or at once when it restarts, as here.
    agent.start_again();
    // Everything queued so far must be receipted (and so leave the outbox) and be in the store.
    let high = seen.iter().max().copied().unwrap_or(0);
    let drained = wait_until(T, || {
        sample(&mut seen);
        outbox_seqs(&db).iter().all(|s| *s > high)
    });
    assert!(drained, "outbox drained up to seq {high}: still {:?}\nagent:\n{}", outbox_seqs(&db), agent.logs());
    agent.kill();
    let stored = stored_seqs(shim, gw);
    let lost: Vec<u64> = seen.difference(&stored).copied().collect();
    assert!(lost.is_empty(), "committed batches missing from the store: {lost:?}");
    assert!(stored.len() >= 8, "too little traffic to mean anything: stored {stored:?}");
    assert_eq!(duplicate_rows(shim, gw), 0, "replays stored twice");
}

#[test]
fn agent_and_shim_kills_with_mosquitto_lose_and_duplicate_nothing() {
    let broker = Mosquitto::start();
    let mut shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    exactly_once_through_kills(&mut shim, &broker.url(), "gw-kill-m");
}

#[test]
fn agent_and_shim_kills_with_embedded_broker_lose_and_duplicate_nothing() {
    let mut shim = Shim::start(ShimOpts::default());
    let url = shim.mqtt_url();
    exactly_once_through_kills(&mut shim, &url, "gw-kill-e");
}
