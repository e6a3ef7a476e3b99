//! End to end: the real `scs-agent` binary against a real Mosquitto, with `mosquitto_sub` /
//! `mosquitto_pub` playing the cloud. Checks the retained status and its Last Will, that telemetry
//! and inventory decode with `scs_protocol`, that nothing leaves the outbox without a receipt, and
//! that receipts empty it.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use scs_protocol::topics::topic;
use scs_protocol::{decode_uplink, encode, GatewayState, Receipt, TopicKind, Uplink};
use scs_testkit::{outbox_seqs, wait_for, wait_until, Agent, AgentOpts, Mosquitto, Subscription};

const T: Duration = Duration::from_secs(20);

/// Decoded uplinks (telemetry + inventory) seen so far in arrival order, as (boot, seq, message).
fn uplinks(sub: &Subscription, gw: &str) -> Vec<(u64, u64, Uplink)> {
    let wanted = [topic(gw, TopicKind::Telemetry), topic(gw, TopicKind::Inventory)];
    let mut out = Vec::new();
    for (t, p) in sub.messages() {
        if !wanted.contains(&t) {
            continue;
        }
        let (_, m) = decode_uplink(&t, &p).unwrap_or_else(|e| panic!("agent output on {t} does not decode: {e}"));
        let (boot, seq) = m.boot_seq().expect("receipted kinds carry boot/seq");
        out.push((boot, seq, m));
    }
    out
}

fn retained_status(broker: &Mosquitto, gw: &str) -> Option<GatewayState> {
    // A fresh subscription receives only the retained message.
    let sub = broker.subscribe(&topic(gw, TopicKind::Status));
    let p = sub.wait_for_topic("/status", Duration::from_secs(3))?;
    match decode_uplink(&topic(gw, TopicKind::Status), &p) {
        Ok((_, Uplink::Status(s))) => Some(s.state),
        other => panic!("status does not decode: {other:?}"),
    }
}

const DEVICES: &str = r#"
[[devices]]
id = "cam-e2e-1"
type = "CAMERA"
name = "test camera"
address = "127.0.0.1:1"

[[devices]]
id = "nvr-e2e-1"
type = "NVR"
"#;

#[test]
fn telemetry_is_kept_until_receipted_then_deleted() {
    let gw = "gw-e2e-telemetry";
    let broker = Mosquitto::start();
    let sub = broker.subscribe(&format!("scs/v1/{gw}/#"));
    let mut opts = AgentOpts::new(gw, &broker.url());
    opts.config_toml = Some(DEVICES.to_owned());
    let agent = Agent::start(opts);

    // Online status, retained.
    wait_until(T, || sub.wait_for_topic("/status", Duration::from_millis(100)).is_some());
    assert_eq!(retained_status(&broker, gw), Some(GatewayState::Online), "retained status online");

    // Inventory + at least 3 telemetry batches, all decoding, same boot, distinct increasing seqs.
    let seen = wait_for(T, "inventory and 3 telemetry batches", || {
        let u = uplinks(&sub, gw);
        let tel = u.iter().filter(|(_, _, m)| matches!(m, Uplink::Telemetry(_))).count();
        let inv = u.iter().any(|(_, _, m)| matches!(m, Uplink::Inventory(_)));
        (tel >= 3 && inv).then_some(u)
    });
    let boots: BTreeSet<u64> = seen.iter().map(|(b, _, _)| *b).collect();
    assert_eq!(boots.len(), 1, "one boot id per agent start");
    let seqs: BTreeSet<u64> = seen.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(seqs.len(), seen.len(), "no seq used twice");

    for (_, _, m) in &seen {
        match m {
            Uplink::Inventory(inv) => {
                assert_eq!(inv.sensors[0].id, gw);
                assert_eq!(inv.sensors[0].sensor_type, "EDGE_CONTROLLER");
                let kids: Vec<_> =
                    inv.sensors[1..].iter().map(|s| (s.id.as_str(), s.sensor_type.as_str(), s.parent.as_deref())).collect();
                assert_eq!(kids, vec![("cam-e2e-1", "CAMERA", Some(gw)), ("nvr-e2e-1", "NVR", Some(gw))]);
            }
            Uplink::Telemetry(b) => {
                let own = b.devices.iter().find(|d| d.sensor == gw).expect("gateway's own report");
                let names: BTreeSet<String> = own.metrics.iter().map(|m| m.key.name().into_owned()).collect();
                for n in ["mem.total_bytes", "load.1m", "uptime.secs", "agent.rss_bytes", "agent.queue_depth"] {
                    assert!(names.contains(n), "metric {n} missing from {names:?}");
                }
                // the camera's address refuses connections: reported offline, not invented
                let cam = b.devices.iter().find(|d| d.sensor == "cam-e2e-1").expect("camera probed");
                assert_eq!(cam.metrics[0].key.name(), "device.online");
                assert_eq!(cam.metrics[0].value.as_f64(), 0.0);
                assert!(b.devices.iter().all(|d| d.sensor != "nvr-e2e-1"), "no address, no fake report");
            }
            _ => {}
        }
    }

    // Published (PUBACKed by the broker) but not receipted: all still in the outbox.
    let queued = outbox_seqs(&agent.db_path());
    assert!(seqs.is_subset(&queued), "published seqs {seqs:?} must stay queued without a receipt; outbox {queued:?}");

    // The cloud receipts what it saw: those rows go, and only those.
    let receipt = Receipt::accepted(seqs.iter().copied().collect());
    broker.publish(&topic(gw, TopicKind::Receipt), &encode(&receipt));
    assert!(
        wait_until(T, || outbox_seqs(&agent.db_path()).is_disjoint(&seqs)),
        "receipted seqs still queued: {:?}",
        outbox_seqs(&agent.db_path())
    );
    let left = outbox_seqs(&agent.db_path());
    assert!(left.iter().all(|s| s > seqs.iter().max().unwrap_or(&0)), "only newer batches remain: {left:?}");

    // Garbage on the receipt topic is refused without harm; the agent keeps publishing.
    broker.publish(&topic(gw, TopicKind::Receipt), b"\xff\x00garbage");
    let before = sub.payloads_on(&topic(gw, TopicKind::Telemetry)).len();
    assert!(wait_until(T, || sub.payloads_on(&topic(gw, TopicKind::Telemetry)).len() > before + 1));
}

#[test]
fn last_will_on_kill9_and_offline_on_sigterm() {
    let gw = "gw-e2e-lwt";
    let broker = Mosquitto::start();
    let mut agent = Agent::start(AgentOpts::new(gw, &broker.url()));
    assert!(wait_until(T, || retained_status(&broker, gw) == Some(GatewayState::Online)), "online");

    agent.kill9();
    assert!(wait_until(T, || retained_status(&broker, gw) == Some(GatewayState::Offline)), "LWT offline after kill -9");

    agent.start_again();
    assert!(wait_until(T, || retained_status(&broker, gw) == Some(GatewayState::Online)), "online again");
    agent.kill(); // SIGTERM: clean disconnect with an explicit retained offline
    assert!(!agent.is_running());
    assert_eq!(retained_status(&broker, gw), Some(GatewayState::Offline));
    assert!(agent.logs().contains("disconnected cleanly"), "graceful path taken");
    // The same records went to the agent's own rotating log file, which commands read.
    let own = std::fs::read_to_string(agent.log_path()).expect("agent.log exists");
    assert!(own.contains("disconnected cleanly") && own.contains("connected to 127.0.0.1"), "{own}");
}

#[test]
fn backlog_survives_restart_and_drains_oldest_first_with_one_boot_per_start() {
    let gw = "gw-e2e-backlog";
    let broker = Mosquitto::start();
    let mut agent = Agent::start(AgentOpts::new(gw, &broker.url()));
    // Let a few batches queue (no cloud, so no receipts), then kill -9.
    assert!(wait_until(T, || outbox_seqs(&agent.db_path()).len() >= 3));
    agent.kill9();
    let before = outbox_seqs(&agent.db_path());
    assert!(before.len() >= 3);

    let sub = broker.subscribe(&format!("scs/v1/{gw}/up/#"));
    agent.start_again();
    // Everything committed before the crash is sent again after the restart.
    let u = wait_for(T, "old seqs resent", || {
        let u = uplinks(&sub, gw);
        let got: BTreeSet<u64> = u.iter().map(|(_, s, _)| *s).collect();
        before.is_subset(&got).then_some(u)
    });
    // Seqs continue above the old ones (the counter never goes back).
    let new_seqs: Vec<u64> = u.iter().map(|(_, s, _)| *s).filter(|s| !before.contains(s)).collect();
    assert!(new_seqs.iter().all(|s| s > before.iter().max().unwrap_or(&0)), "new {new_seqs:?} vs old {before:?}");
    // Backlog replayed oldest first.
    let backlog_order: Vec<u64> = u.iter().map(|(_, s, _)| *s).filter(|s| before.contains(s)).collect();
    let mut sorted = backlog_order.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(backlog_order[..sorted.len()], sorted[..], "backlog order");
    // The old batches keep the boot id they were encoded with; the new ones carry a new boot.
    let boots: BTreeSet<u64> = u.iter().map(|(b, _, _)| *b).collect();
    assert!(boots.len() >= 2, "old and new boot ids: {boots:?}");
}

/// A TCP relay between the agent and the broker whose established connections can be frozen:
/// bytes stop flowing both ways but the sockets stay open — a half-open link, as after a NAT
/// timeout or a broker that hangs. New connections relay normally.
struct FreezableRelay {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicU64>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FreezableRelay {
    fn start(upstream: u16) -> FreezableRelay {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        // Connections with a generation number <= `frozen` stop relaying.
        let frozen = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let f2 = frozen.clone();
        let g2 = generation.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let my_gen = g2.fetch_add(1, Ordering::SeqCst) + 1;
                for (mut from, mut to) in
                    [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
                {
                    let frozen = f2.clone();
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
                        let mut buf = [0u8; 16384];
                        loop {
                            if frozen.load(Ordering::SeqCst) >= my_gen {
                                std::thread::sleep(Duration::from_millis(100));
                                continue; // hold the sockets open, move nothing
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        FreezableRelay { port, frozen, generation }
    }

    /// Freezes every connection established so far; later ones relay normally.
    fn freeze_established(&self) {
        use std::sync::atomic::Ordering;
        self.frozen.store(self.generation.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

#[test]
fn watchdog_recovers_from_a_silent_half_open_connection() {
    let gw = "gw-e2e-watchdog";
    let broker = Mosquitto::start();
    let relay = FreezableRelay::start(broker.port());
    let sub = broker.subscribe(&format!("scs/v1/{gw}/#"));
    let mut opts = AgentOpts::new(gw, &format!("mqtt://127.0.0.1:{}", relay.port));
    opts.config_toml =
        Some("[mqtt]\nkeep_alive_secs = 5\nwatchdog_secs = 7\nreconnect_min_ms = 100\nreconnect_max_secs = 1\n".into());
    let agent = Agent::start(opts);
    let tel = topic(gw, TopicKind::Telemetry);
    assert!(wait_until(T, || sub.payloads_on(&tel).len() >= 2), "telemetry flowing through the relay");

    // The link goes silent without closing.
    relay.freeze_established();
    let frozen_at = sub.payloads_on(&tel).len();
    // The agent must notice on its own (missing ping response or its watchdog) and reconnect.
    assert!(
        wait_until(Duration::from_secs(30), || sub.payloads_on(&tel).len() > frozen_at + 2),
        "no telemetry after the link froze; agent log:\n{}",
        agent.logs()
    );
    // Batches enqueued while the link was dead are delivered too (nothing receipted them).
    let seqs: BTreeSet<u64> = uplinks(&sub, gw).into_iter().map(|(_, s, _)| s).collect();
    let max = *seqs.iter().max().unwrap_or(&0);
    let missing: Vec<u64> = (1..=max).filter(|s| !seqs.contains(s)).collect();
    assert!(wait_until(T, || {
        let got: BTreeSet<u64> = uplinks(&sub, gw).into_iter().map(|(_, s, _)| s).collect();
        missing.iter().all(|s| got.contains(s))
    }));
    let logs = agent.logs();
    assert!(logs.contains("watchdog") || logs.contains("lost"), "recovery was logged:\n{logs}");
}

/// Writes `n` telemetry batches of a 64-device site straight into a fresh outbox (same schema the
/// agent creates), as if the agent had been offline for that long.
fn prefill_outbox(db: &Path, gw: &str, n: u64) -> u64 {
    use scs_protocol::{DeviceReport, Metric, TelemetryBatch};
    let mut conn = rusqlite::Connection::open(db).expect("open outbox db");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, created_ms INTEGER NOT NULL,
             size INTEGER NOT NULL, payload BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )
    .expect("schema");
    let tx = conn.transaction().expect("tx");
    let mut bytes = 0u64;
    for seq in 1..=n {
        let ts = 1_700_000_000_000 + seq * 10_000;
        let mut b = TelemetryBatch::new(gw, 0xB007, seq, ts);
        let mut own =
            vec![Metric::new("cpu.usage_pct", 12.5), Metric::new("mem.used_pct", 40.1), Metric::new("uptime.secs", seq * 10)];
        own.push(Metric::labelled("disk.used_pct", "/", 33.3));
        b.devices.push(DeviceReport { sensor: gw.into(), ts, metrics: own });
        for d in 0..64 {
            b.devices.push(DeviceReport {
                sensor: format!("cam-{d:02}"),
                ts,
                metrics: vec![
                    Metric::new("device.online", 1i64),
                    Metric::new("device.latency_ms", 1.5 + d as f64),
                    Metric::new("camera.fps", 25i64),
                    Metric::new("camera.bitrate_kbps", 4096i64 + seq as i64 % 100),
                ],
            });
        }
        let payload = encode(&b);
        bytes += payload.len() as u64;
        tx.execute(
            "INSERT INTO outbox (seq, kind, created_ms, size, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![seq as i64, TopicKind::Telemetry.code(), ts as i64, payload.len() as i64, payload],
        )
        .expect("insert");
    }
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?1)", [(n + 1) as i64]).expect("meta");
    tx.commit().expect("commit");
    bytes
}

/// A stand-in cloud on a rumqttc client: receipts every uplink seq it sees, in batches every 20 ms
/// (like the shim's group commit). Returns the seqs receipted so far.
fn receipting_cloud(port: u16, gw: &str) -> std::sync::Arc<std::sync::Mutex<Vec<u64>>> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut o = MqttOptions::new(format!("fake-cloud-{gw}"), "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(o, 1024);
    client.subscribe(format!("scs/v1/{gw}/up/#"), QoS::AtLeastOnce).expect("subscribe");
    let (gw, s2) = (gw.to_owned(), seen.clone());
    std::thread::spawn(move || {
        let mut pending: Vec<u64> = Vec::new();
        let mut last_flush = std::time::Instant::now();
        loop {
            match conn.recv_timeout(Duration::from_millis(5)) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    if let Ok((_, m)) = decode_uplink(&p.topic, &p.payload) {
                        if let Some((_, seq)) = m.boot_seq() {
                            pending.push(seq);
                        }
                    }
                }
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                Err(rumqttc::RecvTimeoutError::Disconnected) => return,
                _ => {}
            }
            if !pending.is_empty() && (last_flush.elapsed() >= Duration::from_millis(20) || pending.len() >= 512) {
                let r = Receipt::accepted(std::mem::take(&mut pending));
                s2.lock().expect("lock").extend(&r.accepted);
                let _ = client.try_publish(topic(&gw, TopicKind::Receipt), QoS::AtLeastOnce, false, encode(&r));
                last_flush = std::time::Instant::now();
            }
        }
    });
    seen
}

/// One day of a 64-device site at 10 s (8640 batches) queued while offline, then drained through
/// Mosquitto to a receipting cloud. Prints the rate; a benchmark, so run it on demand:
/// `cargo test -p scs-agent --test agent_mqtt -- --ignored drain --nocapture`.
#[test]
#[ignore]
fn drain_one_day_of_a_64_device_site() {
    let gw = "gw-drain";
    let n = 8640;
    let broker = Mosquitto::start();
    let data = scs_testkit::TempDir::new("drain");
    let bytes = prefill_outbox(&data.join("agent.db"), gw, n);
    // SCS_DRAIN_CLOUD=shim: the real cloud shim on the same Mosquitto receipts instead of the stand-in.
    let use_shim = std::env::var("SCS_DRAIN_CLOUD").is_ok_and(|v| v == "shim");
    let _shim = use_shim.then(|| scs_testkit::Shim::start(scs_testkit::ShimOpts::with_broker(&broker.url())));
    let cloud = if use_shim { Default::default() } else { receipting_cloud(broker.port(), gw) };
    let mut opts = AgentOpts::new(gw, &broker.url());
    opts.data_dir = Some(data.path().to_owned());
    opts.interval_secs = Some(3600);
    if let Ok(w) = std::env::var("SCS_DRAIN_WINDOW") {
        opts.config_toml = Some(format!("[mqtt]\ninflight_window = {w}\n"));
    }
    let start = std::time::Instant::now();
    let agent = Agent::start(opts);
    let drained = wait_until(Duration::from_secs(300), || outbox_seqs(&agent.db_path()).is_empty());
    let secs = start.elapsed().as_secs_f64();
    assert!(drained, "outbox not drained; {} left", outbox_seqs(&agent.db_path()).len());
    if !use_shim {
        let got: BTreeSet<u64> = cloud.lock().expect("lock").iter().copied().collect();
        assert!((1..=n).all(|s| got.contains(&s)), "every queued batch reached the cloud");
    }
    println!(
        "drain via {}: {n} batches ({:.1} MB) in {secs:.1} s = {:.0} batches/s (target: <= 60 s)",
        if use_shim { "shim" } else { "stand-in cloud" },
        bytes as f64 / 1e6,
        n as f64 / secs
    );
}

/// Runs openssl with explicit argv; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mqtts_with_a_ca_file_connects_and_a_foreign_ca_is_refused() {
    let gw = "gw-e2e-tls";
    let pki = scs_testkit::TempDir::new("pki");
    let dir = pki.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let req = |args: &[&str]| {
        let mut a = vec!["req"];
        a.extend_from_slice(&ec);
        a.extend_from_slice(args);
        openssl(dir, &a);
    };
    req(&["-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=scs-test-ca"]);
    req(&["-x509", "-keyout", "other.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=scs-other-ca"]);
    req(&["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write ext");
    #[rustfmt::skip]
    openssl(dir, &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext"]);

    // Mosquitto started as root drops to its own user: it must be able to read these test-only files.
    use std::os::unix::fs::PermissionsExt;
    for f in [dir.to_path_buf(), dir.join("server.key"), dir.join("server.pem")] {
        let mode = if f.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let tls_port = scs_testkit::free_port();
    let d = dir.display();
    let broker =
        Mosquitto::start_with(&format!("listener {tls_port} 127.0.0.1\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"));
    assert!(wait_until(T, || scs_testkit::port_open(tls_port)), "TLS listener up");
    let sub = broker.subscribe("scs/v1/+/up/telemetry");

    let mut opts = AgentOpts::new(gw, &format!("mqtts://localhost:{tls_port}"));
    opts.args = vec!["--ca-file".into(), dir.join("ca.pem").display().to_string()];
    let agent = Agent::start(opts);
    assert!(
        wait_until(T, || !sub.payloads_on(&topic(gw, TopicKind::Telemetry)).is_empty()),
        "telemetry over TLS; agent log:\n{}",
        agent.logs()
    );

    // The same broker with a CA that did not sign its certificate: no session, a TLS error logged.
    let gw2 = "gw-e2e-tls-foreign";
    let mut opts = AgentOpts::new(gw2, &format!("mqtts://localhost:{tls_port}"));
    opts.args = vec!["--ca-file".into(), dir.join("other-ca.pem").display().to_string()];
    let foreign = Agent::start(opts);
    assert!(wait_until(T, || foreign.logs().contains("failed")), "TLS failure logged:\n{}", foreign.logs());
    assert!(sub.payloads_on(&topic(gw2, TopicKind::Telemetry)).is_empty(), "untrusted broker must not get data");
}

#[test]
fn broker_down_then_up_backlog_arrives_without_restarting_the_agent() {
    let gw = "gw-e2e-outage";
    let mut broker = Mosquitto::start();
    let mut opts = AgentOpts::new(gw, &broker.url());
    // Short receipt timeout: if the agent replays before our subscription is live, the re-sends
    // (oldest first as well) still arrive within the test's patience.
    opts.config_toml = Some("[mqtt]\nreconnect_min_ms = 100\nreconnect_max_secs = 1\nreceipt_timeout_secs = 3\n".into());
    let mut agent = Agent::start(opts);
    assert!(wait_until(T, || retained_status(&broker, gw) == Some(GatewayState::Online)));
    let pid = agent.pid();

    broker.stop();
    // Batches keep being committed while the broker is away.
    let during = wait_for(T, "batches queued during the outage", || {
        let q = outbox_seqs(&agent.db_path());
        (q.len() >= 4).then_some(q)
    });
    broker.start_again();
    let sub = broker.subscribe(&format!("scs/v1/{gw}/up/#"));
    let got = wait_for(T, "backlog delivered after the broker came back", || {
        let u = uplinks(&sub, gw);
        let seqs: BTreeSet<u64> = u.iter().map(|(_, s, _)| *s).collect();
        during.is_subset(&seqs).then_some(u)
    });
    assert!(agent.is_running() && agent.pid() == pid, "same agent process throughout");
    let backlog: Vec<u64> = got.iter().map(|(_, s, _)| *s).filter(|s| during.contains(s)).collect();
    let first_pass = &backlog[..during.len().min(backlog.len())];
    assert!(first_pass.windows(2).all(|w| w[0] < w[1]), "backlog replayed oldest first: {backlog:?}");
    // Nothing receipted them (no cloud here): still all queued.
    assert!(during.is_subset(&outbox_seqs(&agent.db_path())));
}
