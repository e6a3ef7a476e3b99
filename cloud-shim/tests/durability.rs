//! Durability end to end, with the real `scs-agent` and `scs-cloud-shim` binaries (testkit), on Mosquitto
//! and on the shim's embedded broker:
//!
//! * kill -9 the agent repeatedly while it enqueues and replays a backlog: every committed batch reaches
//!   the store exactly once;
//! * the broker goes down for a while and comes back: the backlog drains completely, oldest first, and the
//!   agent was never restarted;
//! * the shim is killed mid-stream and restarted: nothing lost, nothing duplicated;
//! * garbage, truncated, oversized and wrong-topic payloads from `mosquitto_pub` are rejected and counted
//!   while the real agent's data keeps being stored.
//!
//! "Committed" is read from the agent's own database: its seq counter (`meta.next_seq`) never goes back, so
//! after a final drain every seq below it must be in the shim's `ingest_receipts` exactly once (no gap
//! rows: these tests never fill the queue). Where a `mosquitto_sub` saw every uplink message, the metric
//! rows in the store are also compared with the samples of the distinct batches stored, which catches a
//! replay that was receipted as a duplicate but wrote its samples again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use scs_protocol::telemetry::DeviceReport;
use scs_protocol::{decode_uplink, encode, Metric, TelemetryBatch, TopicKind, Uplink};
use scs_testkit::{
    append_to_outbox, outbox_next_seq, outbox_seqs, publish, wait_until, Agent, AgentOpts, Mosquitto, Shim, ShimOpts,
    Subscription,
};

/// The shim's own clock, so test data is stamped exactly as the shim stamps it.
#[path = "../src/clock.rs"]
mod clock;
use clock::{now_ms, now_ms_u64};

/// Agent settings that keep the tests in seconds: quick reconnects and resends.
const AGENT_TOML: &str = r#"
[mqtt]
receipt_timeout_secs = 2
reconnect_min_ms = 100
reconnect_max_secs = 1
keep_alive_secs = 5
"#;

const DRAIN: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------- helpers

fn open(path: &Path) -> Connection {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    c.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    c
}

/// The agent's seq counter: every seq below it was committed.
fn agent_next_seq(agent: &Agent) -> u64 {
    outbox_next_seq(&open(&agent.db_path())).expect("read the agent's seq counter")
}

fn agent_outbox_len(agent: &Agent) -> u64 {
    let c = open(&agent.db_path());
    c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0)).expect("count outbox") as u64
}

/// `(boot, seq)` of every message the shim stored for `gw`, with repeats if any.
fn stored(shim_db: &Path, gw: &str) -> Vec<(String, u64)> {
    if !shim_db.exists() {
        return Vec::new();
    }
    let c = open(shim_db);
    let mut st = c.prepare("SELECT boot, seq FROM ingest_receipts WHERE gateway_id = ?1 ORDER BY seq").expect("prepare");
    st.query_map([gw], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
        .expect("query ingest_receipts")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn count_rows(shim_db: &Path, sql: &str, gw: &str) -> u64 {
    open(shim_db).query_row(sql, [gw], |r| r.get::<_, i64>(0)).expect(sql) as u64
}

/// Waits until the store holds every committed seq and the agent's outbox nothing else (receipted
/// rows wait in the file for the agent's next commit).
fn wait_drained(agent: &Agent, shim_db: &Path, gw: &str) -> bool {
    wait_until(DRAIN, || {
        let next = agent_next_seq(agent);
        let stored = stored(shim_db, gw);
        let seqs: BTreeSet<u64> = stored.iter().map(|(_, s)| *s).collect();
        next > 1 && outbox_seqs(&agent.db_path()).is_subset(&seqs) && stored.len() as u64 >= next - 1
    })
}

/// The message inside a captured COSE_Sign1 (not verified: these tests observe durability; the
/// shim verifies what it stores and security_e2e covers the signatures).
fn cose_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut d = minicbor::Decoder::new(bytes);
    if d.tag().ok()? != minicbor::data::Tag::new(18) || d.array().ok()? != Some(4) {
        return None;
    }
    d.skip().ok()?;
    d.skip().ok()?;
    Some(d.bytes().ok()?.to_vec())
}

/// Samples per `(boot hex, seq)` of every distinct receipted uplink message a subscriber saw.
fn samples_seen(sub: &Subscription) -> BTreeMap<(String, u64), usize> {
    let mut m = BTreeMap::new();
    for (topic, payload) in sub.messages() {
        let Some(payload) = cose_payload(&payload) else { continue };
        if let Ok((_, msg)) = decode_uplink(&topic, &payload) {
            let samples = match &msg {
                Uplink::Telemetry(b) => b.sample_count(),
                _ => 0,
            };
            if let Some((boot, seq)) = msg.boot_seq() {
                m.insert((format!("{boot:016x}"), seq), samples);
            }
        }
    }
    m
}

/// The exactly-once check: every seq the agent committed is stored once, nothing else is stored, and
/// (with a complete capture) the store has exactly the samples of those batches.
fn assert_exactly_once(agent: &Agent, shim: &Shim, gw: &str, capture: Option<&Subscription>) {
    let next = agent_next_seq(agent);
    let committed: BTreeSet<u64> = (1..next).collect();
    let rows = stored(&shim.db_path(), gw);
    let mut per_seq: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (boot, seq) in &rows {
        per_seq.entry(*seq).or_default().push(boot.clone());
    }
    let dups: Vec<_> = per_seq.iter().filter(|(_, b)| b.len() > 1).collect();
    let have: BTreeSet<u64> = per_seq.keys().copied().collect();
    // A batch the agent committed between the drain check and its kill is not lost: it is still in
    // its outbox and goes out at its next start. Anything else missing is a loss.
    let held = outbox_seqs(&agent.db_path());
    let missing: Vec<_> = committed.difference(&have).filter(|s| !held.contains(s)).collect();
    let extra: Vec<_> = have.difference(&committed).collect();
    assert!(dups.is_empty(), "seqs stored more than once: {dups:?}");
    assert!(missing.is_empty(), "{} committed seqs never stored: {missing:?}", missing.len());
    assert!(extra.is_empty(), "stored seqs the agent never committed: {extra:?}");
    let gaps = count_rows(&shim.db_path(), "SELECT count(*) FROM gaps WHERE gateway_id = ?1", gw);
    assert_eq!(gaps, 0, "the agent reported dropped messages");
    if let Some(sub) = capture {
        let seen = samples_seen(sub);
        let stored_keys: BTreeSet<(String, u64)> = rows.iter().cloned().collect();
        let unseen: Vec<_> = stored_keys.iter().filter(|k| !seen.contains_key(*k)).collect();
        assert!(unseen.is_empty(), "the capture missed stored messages {unseen:?}");
        let expected: usize = stored_keys.iter().map(|k| seen[k]).sum();
        let metric_rows = count_rows(&shim.db_path(), "SELECT count(*) FROM metrics WHERE gateway_id = ?1", gw);
        assert_eq!(metric_rows, expected as u64, "metric rows vs samples of the distinct stored batches");
    }
    eprintln!("exactly once: {} committed seqs, {} stored rows, {} still queued", committed.len(), rows.len(), held.len());
}

/// A realistic batch: the gateway plus `children` devices with a handful of metrics each.
fn batch(gw: &str, boot: u64, seq: u64, children: usize) -> Vec<u8> {
    let ts = now_ms_u64();
    let mut b = TelemetryBatch::new(gw, boot, seq, ts);
    let mut host = vec![
        Metric::new("cpu.usage_pct", 12.5),
        Metric::new("load.1m", 0.42),
        Metric::new("mem.available_bytes", 512u64 << 20),
        Metric::new("uptime.secs", 86_400u64),
    ];
    host.push(Metric::labelled("net.rx_bytes", "eth0", seq * 1000));
    b.devices.push(DeviceReport { sensor: gw.into(), ts, metrics: host });
    for i in 0..children {
        b.devices.push(DeviceReport {
            sensor: format!("{gw}-cam-{i:02}"),
            ts,
            metrics: vec![Metric::new("device.online", 1i64), Metric::new("device.latency_ms", 3.5)],
        });
    }
    encode(&b)
}

/// Appends `count` committed telemetry batches to a stopped agent's outbox, exactly as its queue stores
/// them (seq from `meta.next_seq`, which is advanced in the same transaction). Returns the seq range.
fn prefill_outbox(agent: &Agent, count: u64, children: usize) -> (u64, u64) {
    let boot = 0x5eed_0000_0000_0001u64;
    append_to_outbox(&agent.db_path(), TopicKind::Telemetry.code(), count, now_ms(), |seq| {
        batch(agent.gateway_id(), boot, seq, children)
    })
    .expect("append to the agent's outbox (schema changed?)")
}

/// Small deterministic jitter so kill points differ between iterations without a rand dependency.
fn jitter_ms(i: u64, lo: u64, hi: u64) -> u64 {
    let x = (i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) >> 33) ^ u64::from(std::process::id());
    lo + x % (hi - lo)
}

/// Options for an agent provisioned on `shim` (its bundle names the shim's broker).
fn agent_opts(shim: &Shim, gw: &str) -> AgentOpts {
    let mut o = shim.agent_opts(gw);
    o.config_toml = Some(AGENT_TOML.to_owned());
    o
}

// ------------------------------------------------------------------------------------------- kill -9

/// Live enqueues plus a replayed backlog of `backlog` batches, with the agent killed (SIGKILL) at
/// varying points `kills` times, then a clean drain.
fn kill9_agent_repeatedly(shim: &Shim, broker_port: u16, gw: &str, backlog: u64, kills: u64) {
    let capture = Subscription::start(broker_port, &[&format!("scs/v1/{gw}/up/#")]);
    let mut agent = Agent::start(agent_opts(shim, gw));
    assert!(
        wait_until(Duration::from_secs(20), || stored(&shim.db_path(), gw).len() >= 2),
        "the agent's first messages never reached the store"
    );
    // A backlog to replay: the agent is stopped, batches are committed to its outbox, it starts again.
    agent.kill9();
    let (first, last) = prefill_outbox(&agent, backlog, 8);
    agent.start_again();
    let mut killed_during_replay = 0;
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(jitter_ms(i, 150, 1200)));
        if agent_outbox_len(&agent) > 0 {
            killed_during_replay += 1;
        }
        agent.kill9();
        agent.start_again();
    }
    eprintln!("{kills} kills, {killed_during_replay} with a backlog still queued (prefilled seqs {first}..={last})");
    assert!(wait_drained(&agent, &shim.db_path(), gw), "backlog not drained: outbox {}", agent_outbox_len(&agent));
    agent.kill();
    // The receipts of the last messages can race the shutdown; start once more and let it drain.
    if agent_outbox_len(&agent) > 0 {
        agent.start_again();
        assert!(wait_drained(&agent, &shim.db_path(), gw));
        agent.kill();
    }
    // Messages still in flight in the broker when the agent stopped are stored late: wait for them.
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once(&agent, shim, gw, Some(&capture));
}

#[test]
fn kill9_agent_during_enqueue_and_replay_mosquitto() {
    let broker = Mosquitto::start_with("max_queued_messages 100000\n");
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    kill9_agent_repeatedly(&shim, broker.port(), "gw-dur-k9m", 1500, 8);
}

#[test]
fn kill9_agent_during_enqueue_and_replay_embedded_broker() {
    let shim = Shim::start(ShimOpts::default());
    let port = shim.mqtt_port().expect("embedded broker");
    kill9_agent_repeatedly(&shim, port, "gw-dur-k9e", 1500, 8);
}

// ------------------------------------------------------------------------------------------- broker down

#[test]
fn broker_down_then_up_backlog_drains_oldest_first_without_agent_restart() {
    let gw = "gw-dur-brk";
    let mut broker = Mosquitto::start_with("max_queued_messages 100000\n");
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    let mut opts = agent_opts(&shim, gw);
    // Reconnect no sooner than 1.5 s, so the capturing subscriber is back before the backlog flows.
    opts.config_toml = Some(
        AGENT_TOML
            .replace("reconnect_min_ms = 100", "reconnect_min_ms = 1500")
            .replace("reconnect_max_secs = 1", "reconnect_max_secs = 3"),
    );
    let mut agent = Agent::start(opts);
    let pid = agent.pid();
    assert!(wait_until(Duration::from_secs(20), || stored(&shim.db_path(), gw).len() >= 2), "no data before the outage");

    broker.stop();
    let down_at = agent_next_seq(&agent);
    // The agent keeps collecting while the broker is away: its outbox grows.
    assert!(
        wait_until(Duration::from_secs(20), || agent_outbox_len(&agent) >= 5),
        "the outbox did not grow during the outage ({} queued)",
        agent_outbox_len(&agent)
    );
    let backlog_last = agent_next_seq(&agent) - 1;
    broker.start_again();
    let capture = Subscription::start(broker.port(), &[&format!("scs/v1/{gw}/up/#")]);

    assert!(wait_drained(&agent, &shim.db_path(), gw), "backlog not drained after the broker came back");
    assert!(agent.is_running() && agent.pid() == pid, "the agent was restarted (or died) during the outage");

    // Oldest first: the backlog seqs arrive in ascending order (live messages may go in between).
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for (topic, payload) in capture.messages() {
        let Some(payload) = cose_payload(&payload) else { continue };
        if let Ok((_, msg)) = decode_uplink(&topic, &payload) {
            if let Some((_, seq)) = msg.boot_seq() {
                if seq >= down_at && seq <= backlog_last && seen.insert(seq) {
                    order.push(seq);
                }
            }
        }
    }
    assert!(order.len() as u64 * 2 >= backlog_last + 1 - down_at, "captured too little of the backlog: {order:?}");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "backlog not replayed oldest first: {order:?}");
    agent.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once(&agent, &shim, gw, None);
}

// ------------------------------------------------------------------------------------------- shim killed

fn shim_killed_mid_stream(mut shim: Shim, broker_port: u16, gw: &str) {
    let capture_external = shim.mqtt_port().is_none();
    let capture = capture_external.then(|| Subscription::start(broker_port, &[&format!("scs/v1/{gw}/up/#")]));
    let mut agent = Agent::start(agent_opts(&shim, gw));
    assert!(wait_until(Duration::from_secs(20), || stored(&shim.db_path(), gw).len() >= 2), "no data before the crash");
    agent.kill9();
    prefill_outbox(&agent, 1000, 8);
    agent.start_again();
    // Kill the shim while the backlog streams in, twice.
    for i in 0..2 {
        let before = stored(&shim.db_path(), gw).len();
        let t0 = Instant::now();
        while stored(&shim.db_path(), gw).len() < before + 50 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        shim.kill9();
        eprintln!(
            "shim killed (round {i}) with {} messages stored, outbox {}",
            stored(&shim.db_path(), gw).len(),
            agent_outbox_len(&agent)
        );
        std::thread::sleep(Duration::from_millis(1500));
        shim.start_again();
    }
    assert!(wait_drained(&agent, &shim.db_path(), gw), "backlog not drained after the shim restarts");
    agent.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once(&agent, &shim, gw, capture.as_ref());
}

#[test]
fn shim_killed_mid_stream_mosquitto() {
    let broker = Mosquitto::start_with("max_queued_messages 100000\n");
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    shim_killed_mid_stream(shim, broker.port(), "gw-dur-shm");
}

#[test]
fn shim_killed_mid_stream_embedded_broker() {
    // The broker dies with the shim: the agent reconnects to the restarted one on the same port.
    let shim = Shim::start(ShimOpts::default());
    let port = shim.mqtt_port().expect("embedded broker");
    shim_killed_mid_stream(shim, port, "gw-dur-she");
}

// ------------------------------------------------------------------------------------------- hostile input

fn hostile_payloads_with_real_agent(shim: &Shim, port: u16, gw: &str, oversized: bool) {
    let capture = Subscription::start(port, &[&format!("scs/v1/{gw}/up/telemetry")]);
    let agent = Agent::start(agent_opts(shim, gw));
    let real = capture.wait_for_topic("/up/telemetry", Duration::from_secs(20)).expect("a real telemetry batch");
    let api = shim.api();
    let rejected = || api.get_json(&format!("/v1/gateways/{gw}/stats"))["rejected"].as_u64().unwrap_or(0);
    let base = rejected();
    let t = format!("scs/v1/{gw}/up/telemetry");
    // Each of these reaches the shim on one of this gateway's uplink topics and must be counted for it.
    let mut own: Vec<(String, Vec<u8>)> = vec![
        (t.clone(), b"\x00\x01garbage that is not CBOR".to_vec()),
        (t.clone(), real[..real.len() / 2].to_vec()),
        (t.clone(), [real.clone(), vec![0]].concat()),
        (format!("scs/v1/{gw}/up/nonsense"), real.clone()),
        (format!("scs/v1/{gw}/up/inventory"), real.clone()),
    ];
    if oversized {
        own.push((t.clone(), vec![0x5a; scs_protocol::limits::MAX_UPLINK_BYTES + 1]));
    }
    for (topic, payload) in &own {
        publish(port, topic, payload);
    }
    // Another gateway's topic with this gateway's message: counted for that gateway (mismatch).
    let other = format!("{gw}-other");
    publish(port, &format!("scs/v1/{other}/up/telemetry"), &real);
    let sent = own.len() as u64;
    let after_garbage = stored(&shim.db_path(), gw).len();
    assert!(
        wait_until(Duration::from_secs(20), || rejected() >= base + sent),
        "hostile messages not counted: {} of {sent} (stats {})",
        rejected() - base,
        api.get_json(&format!("/v1/gateways/{gw}/stats"))
    );
    assert!(
        wait_until(Duration::from_secs(20), || stored(&shim.db_path(), gw).len() >= after_garbage + 3),
        "the real agent's data stopped flowing after the hostile input"
    );
    assert_eq!(rejected(), base + sent, "exactly the hostile messages are counted");
    let other_stats = api.get_json(&format!("/v1/gateways/{other}/stats"));
    assert!(other_stats["rejected"].as_u64().unwrap_or(0) >= 1, "mismatch not counted for {other}: {other_stats}");
    let mut agent = agent;
    agent.kill();
    assert!(shim.api().get("/healthz").is_success());
    eprintln!("hostile: {sent} sent, {} counted for {gw}", rejected() - base);
}

#[test]
fn hostile_payloads_rejected_and_counted_mosquitto() {
    let broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    hostile_payloads_with_real_agent(&shim, broker.port(), "gw-dur-hm", true);
}

#[test]
fn hostile_payloads_rejected_and_counted_embedded_broker() {
    let shim = Shim::start(ShimOpts::default());
    let port = shim.mqtt_port().expect("embedded broker");
    // The embedded broker enforces its own packet limit, so an oversized payload never reaches ingest.
    hostile_payloads_with_real_agent(&shim, port, "gw-dur-he", false);
}
