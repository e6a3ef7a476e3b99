//! Several shims on one Mosquitto through MQTT shared subscriptions, with one store between them:
//! either a third shim acting as the Worker (`--worker-url`, which also tests the Worker backend), or
//! one SQLite file shared by both. Every message is stored exactly once and receipted.

mod support;

use std::time::Duration;

use scs_protocol::TopicKind;
use scs_testkit::{free_port, wait_until, Mosquitto, Shim, ShimOpts, TempDir};
use support::{rows_per_batch, telemetry, TestGateway};

const T: Duration = Duration::from_secs(30);
const GATEWAYS: usize = 3;
const PER_GATEWAY: u64 = 60;
const METRICS: usize = 4;

fn shim_on(broker: &Mosquitto, args: &[String], data_dir: Option<&std::path::Path>) -> Shim {
    let mut opts = ShimOpts::with_broker(&broker.url());
    opts.args = args.to_vec();
    opts.args.extend(["--share-group".to_owned(), "scs-test".to_owned()]);
    opts.data_dir = data_dir.map(Into::into);
    Shim::start(opts)
}

/// Publishes PER_GATEWAY batches per gateway (plus a replay of the first ten), waits for every receipt.
fn drive(broker: &Mosquitto, shims: &[&Shim]) -> Vec<TestGateway> {
    let gws: Vec<TestGateway> =
        (0..GATEWAYS).map(|i| TestGateway::connect_on(shims, broker.port(), &format!("gw-s{i}"))).collect();
    for seq in 1..=PER_GATEWAY {
        for g in &gws {
            g.publish(TopicKind::Telemetry, telemetry(&g.id, seq, METRICS));
        }
    }
    for g in &gws {
        assert!(g.wait_accepted(&(1..=PER_GATEWAY).collect::<Vec<_>>(), T), "{}: {:?}", g.id, g.receipts().len());
    }
    for seq in 1..=10 {
        for g in &gws {
            g.publish(TopicKind::Telemetry, telemetry(&g.id, seq, METRICS));
        }
    }
    for g in &gws {
        let target = PER_GATEWAY as usize + 10;
        assert!(wait_until(T, || g.accepted().len() >= target), "replays receipted for {}", g.id);
    }
    gws
}

fn assert_stored_once(store: &Shim) {
    for i in 0..GATEWAYS {
        let gw = format!("gw-s{i}");
        let stats = store.api().get_json(&format!("/v1/gateways/{gw}/stats"));
        assert_eq!(stats["storedMessages"], PER_GATEWAY, "{stats}");
        let v = store.api().get_json(&format!("/v1/sensors/{gw}/metrics?limit=10000"));
        let rows = v["samples"].as_array().map_or(0, Vec::len);
        assert_eq!(rows, PER_GATEWAY as usize * (rows_per_batch(METRICS) - 1), "no duplicate rows for {gw}");
    }
}

fn processed(shim: &Shim) -> u64 {
    let t = shim.api().get_json("/v1/stats");
    t["process"]["stored"].as_u64().unwrap_or(0) + t["process"]["duplicates"].as_u64().unwrap_or(0)
}

#[test]
fn two_shims_share_the_load_through_a_worker() {
    let broker = Mosquitto::start();
    let worker = Shim::start(ShimOpts::default());
    let args = vec!["--worker-url".to_owned(), worker.http_url()];
    // Shims of one deployment sign with one cloud key (the one in the gateways' bundles).
    let dirs = [TempDir::new("fwd-a"), TempDir::new("fwd-b")];
    for d in &dirs {
        std::fs::create_dir_all(d.join("keys")).unwrap();
        std::fs::copy(worker.data_dir().join("keys/cloud-sign.pk8"), d.join("keys/cloud-sign.pk8")).unwrap();
    }
    let a = shim_on(&broker, &args, Some(dirs[0].path()));
    let b = shim_on(&broker, &args, Some(dirs[1].path()));
    let _gws = drive(&broker, &[&worker, &a, &b]);
    assert_stored_once(&worker);
    let (pa, pb) = (processed(&a), processed(&b));
    assert_eq!(pa + pb, (GATEWAYS as u64) * (PER_GATEWAY + 10), "each message handled by exactly one shim");
    assert!(pa > 0 && pb > 0, "the shared subscription split the load: {pa} / {pb}");
}

#[test]
fn two_shims_share_one_sqlite_file() {
    let broker = Mosquitto::start();
    let dir = TempDir::new("shared-store");
    let a = shim_on(&broker, &[], Some(dir.path()));
    let b = shim_on(&broker, &[], Some(dir.path()));
    let _gws = drive(&broker, &[&a]);
    assert_stored_once(&a);
    assert_stored_once(&b);
    let (pa, pb) = (processed(&a), processed(&b));
    assert!(pa > 0 && pb > 0, "the shared subscription split the load: {pa} / {pb}");
}

#[test]
fn worker_down_means_no_receipt_until_it_is_back() {
    let broker = Mosquitto::start();
    let worker_port = free_port();
    let a = shim_on(&broker, &["--worker-url".to_owned(), format!("http://127.0.0.1:{worker_port}")], None);
    let g = TestGateway::connect(&a, broker.port(), "gw-wd");
    g.publish(TopicKind::Telemetry, telemetry("gw-wd", 1, 2));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(g.accepted().is_empty(), "no receipt while the Worker is unreachable: {:?}", g.receipts());
    let worker = Shim::start(ShimOpts { http_port: Some(worker_port), ..ShimOpts::default() });
    scs_testkit::copy_gateway(a.data_dir(), worker.data_dir(), "gw-wd");
    // Like the agent: re-send what has no receipt yet, until it has one.
    let msg = telemetry("gw-wd", 1, 2);
    let ok = g.resend_until_accepted(TopicKind::Telemetry, 1, &msg, Duration::from_millis(500), T);
    assert!(ok, "receipt once the Worker answers");
    let stats = worker.api().get_json("/v1/gateways/gw-wd/stats");
    assert_eq!(stats["storedMessages"], 1, "{stats}");
    drop(a);
}

/// The Worker backend over HTTPS: a shim serving TLS with a private CA as the Worker, a forwarding shim
/// trusting that CA (`--worker-ca`), and one that does not (its data stays unreceipted).
#[test]
fn worker_over_https_with_a_private_ca() {
    let dir = TempDir::new("worker-tls");
    let scs_testkit::TestTls { ca, cert, key, .. } = scs_testkit::generate_tls(dir.path(), &["localhost"]);
    let (http_port, mqtt_port) = (free_port(), free_port());
    let worker_data = dir.join("worker-data");
    let args = [
        "serve".into(),
        "--data-dir".into(),
        worker_data.clone().into_os_string(),
        "--http".into(),
        format!("127.0.0.1:{http_port}").into(),
        "--mqtt-listen".into(),
        format!("127.0.0.1:{mqtt_port}").into(),
        "--tls-cert".into(),
        cert.into_os_string(),
        "--tls-key".into(),
        key.into_os_string(),
    ];
    let env = vec![("SCS_API_TOKEN".to_owned(), scs_testkit::TEST_TOKEN.to_owned()), ("RUST_LOG".to_owned(), "info".to_owned())];
    let mut worker =
        scs_testkit::Process::spawn("worker", &scs_testkit::bin_path("scs-cloud-shim"), args.to_vec(), env, dir.path());
    let pem = std::fs::read(&ca).expect("read ca");
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i.expect("pem") {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let https: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into();
    let health = format!("https://localhost:{http_port}/healthz");
    let up = wait_until(T, || https.get(&health).call().map(|r| r.status() == 200).unwrap_or(false));
    if !up {
        worker.print_log_tails(40);
        panic!("TLS worker not ready");
    }

    let broker = Mosquitto::start();
    let url = format!("https://localhost:{http_port}");
    let trusting = shim_on(&broker, &["--worker-url".into(), url.clone(), "--worker-ca".into(), ca.display().to_string()], None);
    let g = TestGateway::connect(&trusting, broker.port(), "gw-tls");
    scs_testkit::copy_gateway(trusting.data_dir(), &worker_data, "gw-tls");
    g.publish(TopicKind::Telemetry, telemetry("gw-tls", 1, 2));
    assert!(g.wait_accepted(&[1], T), "receipt through the HTTPS worker: {:?}", g.receipts());
    drop(trusting);

    let untrusting = shim_on(&broker, &["--worker-url".into(), url], None);
    let g2 = TestGateway::connect(&untrusting, broker.port(), "gw-tls-2");
    scs_testkit::copy_gateway(untrusting.data_dir(), &worker_data, "gw-tls-2");
    g2.publish(TopicKind::Telemetry, telemetry("gw-tls-2", 1, 2));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(g2.accepted().is_empty(), "a worker with an untrusted certificate stores nothing, so no receipt");
    drop(untrusting);

    let conn = rusqlite::Connection::open(worker_data.join("scs.db")).expect("worker db");
    let stored: Vec<String> = conn
        .prepare("SELECT gateway_id FROM ingest_receipts ORDER BY gateway_id")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(stored, vec!["gw-tls".to_owned()]);
    worker.kill();
}
