//! Attack suite (issue 9) against the real `scs-cloud-shim` binary, with stock clients (`mosquitto_pub`,
//! `mosquitto_sub`, rumqttc) on the embedded broker and on Mosquitto with the generated mTLS + ACL set-up.
//! Each attack must fail, and the legitimate gateway's data must be complete: every seq stored exactly once.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use scs_protocol::cose::{verify1, VerifyingKey};
use scs_protocol::topics::topic;
use scs_protocol::{decode_downlink, encode, Downlink, GatewayState, TelemetryBatch, TopicKind};
use scs_testkit::{
    gateways_add, try_publish_opts, wait_for, wait_until, GatewayCreds, Mosquitto, MqttAuth, PubOpts, Shim, ShimOpts,
    Subscription,
};
use serde_json::json;
use support::{inventory, status, telemetry, TestGateway, BOOT};

const T: Duration = Duration::from_secs(15);

fn db(shim: &Shim) -> Connection {
    let c = Connection::open_with_flags(shim.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open scs.db");
    c.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    c
}

/// Seqs stored for `gw`, with repetitions (there must be none).
fn stored_seqs(shim: &Shim, gw: &str) -> Vec<i64> {
    let c = db(shim);
    let mut st = c.prepare("SELECT seq FROM ingest_receipts WHERE gateway_id = ?1 ORDER BY seq").unwrap();
    st.query_map([gw], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn rejections(shim: &Shim, gw: &str, reason: &str) -> i64 {
    db(shim)
        .query_row("SELECT coalesce(sum(count), 0) FROM rejections WHERE gateway_id = ?1 AND reason = ?2", [gw, reason], |r| {
            r.get(0)
        })
        .unwrap()
}

fn count(shim: &Shim, sql: &str) -> i64 {
    db(shim).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn anonymous() -> PubOpts {
    PubOpts { auth: Some(MqttAuth::default()), ..PubOpts::default() }
}

fn as_login(username: &str, password: &str, client_id: &str) -> PubOpts {
    PubOpts { auth: Some(MqttAuth::password(username, password, Some(client_id))), ..PubOpts::default() }
}

/// Waits until every seq of `seqs` is stored, then checks each is stored exactly once.
fn assert_complete(shim: &Shim, gw: &str, seqs: &[i64]) {
    let ok = wait_until(T, || {
        let s = stored_seqs(shim, gw);
        seqs.iter().all(|x| s.contains(x))
    });
    let got = stored_seqs(shim, gw);
    assert!(ok, "gateway {gw}: expected seqs {seqs:?} stored, got {got:?}");
    assert_eq!(got, seqs, "gateway {gw}: every seq exactly once");
}

/// Attack 1 on the embedded broker: no login, unknown gateway, wrong password, another gateway's client
/// id, and a revoked gateway are all refused at CONNECT.
#[test]
fn embedded_broker_refuses_every_client_without_valid_credentials() {
    let shim = Shim::start(ShimOpts::default());
    let port = shim.mqtt_port().unwrap();
    let gw1 = shim.add_gateway("gw-1");
    let gw2 = shim.add_gateway("gw-2");
    let t = topic("gw-1", TopicKind::Telemetry);
    let payload = gw1.sign(&t, &telemetry("gw-1", 1, 3));

    assert!(try_publish_opts(port, &t, &payload, &anonymous()).is_err(), "anonymous client accepted");
    assert!(try_publish_opts(port, &t, &payload, &as_login("nobody", "x", "nobody")).is_err(), "unknown gateway accepted");
    assert!(try_publish_opts(port, &t, &payload, &as_login("gw-1", "wrong", "scs-agent-gw-1")).is_err(), "wrong password");
    assert!(try_publish_opts(port, &t, &payload, &as_login("gw-1", &gw2.password, "gw-1")).is_err(), "gw-2's password as gw-1");
    // Attack 6, second half: a valid gateway cannot use gw-1's client id (which would kick gw-1 off).
    assert!(
        try_publish_opts(port, &t, &payload, &as_login("gw-2", &gw2.password, "scs-agent-gw-1")).is_err(),
        "gw-2 took gw-1's client id"
    );
    assert!(try_publish_opts(port, &t, &payload, &as_login("scs-shim", "guess", "scs-shim-x")).is_err(), "shim login guessed");
    // The real gateway gets in, and its message is stored.
    try_publish_opts(port, &t, &payload, &as_login("gw-1", &gw1.password, "scs-agent-gw-1")).expect("gw-1 connects");
    assert_complete(&shim, "gw-1", &[1]);

    // Revocation takes effect without a restart.
    shim.revoke_gateway("gw-1");
    std::thread::sleep(Duration::from_millis(1200));
    let t2 = gw1.sign(&t, &telemetry("gw-1", 2, 3));
    assert!(
        try_publish_opts(port, &t, &t2, &as_login("gw-1", &gw1.password, "scs-agent-gw-1")).is_err(),
        "revoked gw-1 accepted"
    );
    // Signed uplinks of the revoked gateway arriving another way (HTTP ingest with a valid token) are refused.
    let body = http_batch(&[(t.as_str(), t2.as_slice())]);
    let r = shim.api().post("/v1/ingest", "application/cbor", &body).json();
    assert_eq!(r["results"][0]["status"], "rejected", "{r}");
    assert!(r["results"][0]["error"].as_str().unwrap_or("").starts_with("revoked"), "{r}");
    assert_eq!(stored_seqs(&shim, "gw-1"), vec![1]);
}

fn http_batch(messages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(messages.len() as u64).unwrap();
    for (t, p) in messages {
        e.array(2).unwrap().str(t).unwrap().bytes(p).unwrap();
    }
    e.into_writer()
}

/// Attack 2 (and tampering): another authenticated gateway publishes on gw-1's topics, unsigned, signed
/// with its own key under gw-1's kid, replayed from another topic, tampered; claims gw-1's next seq to
/// make the real one a duplicate; writes samples for gw-1's sensors from its own topic; re-parents
/// gw-1 with its inventory. None of it is stored, all of it is counted, nothing forged is receipted, and
/// every real seq of gw-1 is stored exactly once.
fn forged_uplinks_fail(shim: &Shim, port: u16) {
    let real = TestGateway::connect(shim, port, "gw-1");
    let evil = TestGateway::connect(shim, port, "evil");
    real.publish_retained(TopicKind::Status, status("gw-1", GatewayState::Online));
    real.publish(TopicKind::Inventory, inventory("gw-1", 1));
    for seq in 2..=5 {
        real.publish(TopicKind::Telemetry, telemetry("gw-1", seq, 4));
    }
    assert!(real.wait_accepted(&[1, 2, 3, 4, 5], T), "receipts {:?}", real.receipts());

    let tel = topic("gw-1", TopicKind::Telemetry);
    let inv = topic("gw-1", TopicKind::Inventory);
    // gw-1's next seq under its real boot, every way evil can produce it.
    let next = telemetry("gw-1", 6, 4);
    evil.publish_raw(&tel, next.clone(), false);
    evil.publish_raw(&tel, evil.creds.sign_as("gw-1", &tel, &next), false);
    evil.publish_raw(&tel, evil.creds.sign(&tel, &next), false);
    // A real signed message of gw-1, replayed onto another topic, and a tampered copy.
    let genuine = real.creds.sign(&tel, &next);
    evil.publish_raw(&inv, genuine.clone(), false);
    let mut tampered = genuine.clone();
    let n = tampered.len();
    tampered[n - 1] ^= 0x01;
    evil.publish_raw(&tel, tampered, false);
    // Samples for gw-1's sensors and a take-over inventory, from evil's own topics.
    let mut b = TelemetryBatch::new("evil", 99, 1, 1);
    b.devices.push(scs_protocol::DeviceReport {
        sensor: "gw-1".into(),
        ts: 1,
        metrics: vec![scs_protocol::Metric::new("cpu.usage_pct", 100.0)],
    });
    evil.publish(TopicKind::Telemetry, encode(&b));
    let mut takeover = scs_protocol::Inventory {
        v: 1,
        gateway: "evil".into(),
        boot: 99,
        seq: 2,
        ts: 1,
        sensors: vec![scs_protocol::SensorInfo {
            id: "gw-1".into(),
            sensor_type: "CAMERA".into(),
            parent: Some("evil".into()),
            name: None,
            attrs: None,
        }],
        agent: None,
    };
    evil.publish(TopicKind::Inventory, encode(&takeover));
    takeover.seq = 3;
    takeover.sensors[0].id = "gw-1-cam-1".into();
    evil.publish(TopicKind::Inventory, encode(&takeover));
    // A spoofed offline status for gw-1 (attack 6): must not change its presence.
    evil.publish_raw(
        &topic("gw-1", TopicKind::Status),
        evil.creds.sign_as("gw-1", "x", &status("gw-1", GatewayState::Offline)),
        true,
    );

    let refused = wait_for(T, "forgeries counted", || {
        let n = rejections(shim, "gw-1", "signature");
        (n >= 6).then_some(n)
    });
    assert_eq!(refused, 6, "unsigned, wrong key, wrong kid, replayed topic, tampered, spoofed status");
    assert!(wait_until(T, || rejections(shim, "evil", "sensor_owner") >= 3), "evil's ownership violations counted");
    // Now the real seq 6 arrives and is stored (not a duplicate of a forgery).
    real.publish(TopicKind::Telemetry, next);
    assert!(real.wait_accepted(&[6], T));
    assert_complete(shim, "gw-1", &[1, 2, 3, 4, 5, 6]);
    assert!(real.rejected().is_empty(), "a forgery made the shim reject a real seq: {:?}", real.receipts());
    assert_eq!(count(shim, "SELECT count(*) FROM metrics WHERE sensor_id = 'gw-1' AND gateway_id <> 'gw-1'"), 0);
    let (ty, owner): (String, String) =
        db(shim).query_row("SELECT type, gateway_id FROM sensors WHERE id = 'gw-1'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((ty.as_str(), owner.as_str()), ("EDGE_CONTROLLER", "gw-1"));
    let cam_parent: String =
        db(shim).query_row("SELECT parent_sensor_id FROM sensors WHERE id = 'gw-1-cam-1'", [], |r| r.get(0)).unwrap();
    assert_eq!(cam_parent, "gw-1");
    assert_eq!(count(shim, "SELECT count(*) FROM sensors WHERE id = 'gw-1' AND status = 'online'"), 1, "presence kept");

    // HTTP ingest with a valid API token: the same per-gateway check applies.
    let unsigned = telemetry("gw-1", 7, 4);
    let r = shim.api().post("/v1/ingest", "application/cbor", &http_batch(&[(tel.as_str(), unsigned.as_slice())])).json();
    assert_eq!(r["results"][0]["status"], "rejected", "{r}");
    assert_complete(shim, "gw-1", &[1, 2, 3, 4, 5, 6]);
}

#[test]
fn forged_uplinks_fail_on_the_embedded_broker() {
    let shim = Shim::start(ShimOpts::default());
    forged_uplinks_fail(&shim, shim.mqtt_port().unwrap());
}

#[test]
fn forged_uplinks_fail_on_mosquitto_without_acl() {
    // An anonymous Mosquitto (no broker-level protection at all): message signatures alone hold.
    let broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    forged_uplinks_fail(&shim, broker.port());
}

/// Attacks 3, 5, 6 from the shim's side: a spoofed retained offline status does not hold a command; the
/// command read off the wire is signed by the cloud and bound to gw-1's topic, so it verifies nowhere else.
#[test]
fn commands_are_signed_topic_bound_and_not_held_by_a_spoofed_status() {
    let shim = Shim::start(ShimOpts::default());
    let port = shim.mqtt_port().unwrap();
    let real = TestGateway::connect(&shim, port, "gw-1");
    let evil = TestGateway::connect(&shim, port, "evil");
    real.publish_retained(TopicKind::Status, status("gw-1", GatewayState::Online));
    wait_for(T, "gw-1 online", || {
        (count(&shim, "SELECT count(*) FROM sensors WHERE id = 'gw-1' AND status = 'online'") == 1).then_some(())
    });
    let watch = Subscription::start(port, &["scs/v1/+/down/#"]);
    let st = topic("gw-1", TopicKind::Status);
    evil.publish_raw(&st, evil.creds.sign_as("gw-1", &st, &status("gw-1", GatewayState::Offline)), true);
    evil.publish_raw(&st, encode_offline(), true);
    assert!(wait_until(T, || rejections(&shim, "gw-1", "signature") >= 2));

    let r = shim.api().post_json("/v1/gateways/gw-1/commands", &json!({"type": "device.info"}));
    assert!(r.is_success(), "{}", r.text());
    let cmd_topic = topic("gw-1", TopicKind::Command);
    let bytes = watch
        .wait_for_topic("gw-1/down/command", T)
        .expect("the command was published although a spoofed offline status was retained");
    let cloud = VerifyingKey(real.creds.cloud_public_key);
    let v = verify1(&bytes, cmd_topic.as_bytes(), |kid| (kid == b"cloud").then_some(cloud)).expect("command signed by the cloud");
    assert!(matches!(decode_downlink(&cmd_topic, v.payload), Ok((_, Downlink::Command(_)))));
    // Replayed to another gateway's topic, it does not verify.
    let other = topic("evil", TopicKind::Command);
    assert!(verify1(&bytes, other.as_bytes(), |kid| (kid == b"cloud").then_some(cloud)).is_err());
    // Signed by anyone else, it does not verify either.
    let forged = evil.creds.sign_as("cloud", &cmd_topic, v.payload);
    assert!(verify1(&forged, cmd_topic.as_bytes(), |kid| (kid == b"cloud").then_some(cloud)).is_err());
}

fn encode_offline() -> Vec<u8> {
    status("gw-1", GatewayState::Offline)
}

/// The documented production set-up: Mosquitto with mTLS (`use_identity_as_username`) and the generated
/// ACL. No certificate, no connection; a valid gateway can neither write nor read another's topics.
#[test]
fn mosquitto_mtls_and_acl_confine_each_gateway() {
    let tmp = scs_testkit::TempDir::new("mtls");
    let data = tmp.join("shim-data");
    let out = tmp.join("mosquitto");
    let broker = Mosquitto::start_conf(|port| {
        let o = std::process::Command::new(scs_testkit::bin_path("scs-cloud-shim"))
            .args(["mosquitto-config", "--data-dir"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .output()
            .expect("run mosquitto-config");
        assert!(o.status.success(), "mosquitto-config: {}", String::from_utf8_lossy(&o.stderr));
        let conf = std::fs::read_to_string(out.join("mosquitto.conf")).expect("generated mosquitto.conf");
        // Started as root, Mosquitto would switch to its own user, which cannot read our private temp
        // files (in production the files are chowned to it, see docs/deploy.md).
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            format!("user root\n{conf}")
        } else {
            conf
        }
    });
    let port = broker.port();
    let shim = Shim::start(ShimOpts {
        data_dir: Some(data.clone()),
        broker: Some(format!("mqtts://127.0.0.1:{port}")),
        args: vec![
            "--broker-ca".into(),
            out.join("ca.pem").display().to_string(),
            "--broker-client-cert".into(),
            out.join("shim.pem").display().to_string(),
            "--broker-client-key".into(),
            out.join("shim.key").display().to_string(),
        ],
        ..ShimOpts::default()
    });
    let bundle_of = |id: &str| gateways_add(&data, id, &tmp.join(format!("{id}.toml")), None);
    let gw1 = bundle_of("gw-1");
    let evil = bundle_of("evil");
    assert!(gw1.client_cert_pem.is_some() && gw1.client_key_pem.is_some() && gw1.broker_ca_pem.is_some());
    let tls = |c: &GatewayCreds| {
        let dir = tmp.join(format!("tls-{}", c.id));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), c.broker_ca_pem.as_deref().unwrap()).unwrap();
        std::fs::write(dir.join("cert.pem"), c.client_cert_pem.as_deref().unwrap()).unwrap();
        std::fs::write(dir.join("key.pem"), c.client_key_pem.as_deref().unwrap()).unwrap();
        MqttAuth {
            client_id: Some(format!("scs-agent-{}", c.id)),
            tls: Some((dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))),
            ..MqttAuth::default()
        }
    };
    let (a1, ae) = (tls(&gw1), tls(&evil));
    let tel = topic("gw-1", TopicKind::Telemetry);
    let opts = |a: &MqttAuth| PubOpts { auth: Some(a.clone()), ..PubOpts::default() };

    // No client certificate: refused.
    let no_cert = MqttAuth { tls: None, ..a1.clone() };
    assert!(try_publish_opts(port, &tel, b"x", &opts(&no_cert)).is_err(), "plain-TCP / certificate-less client accepted");

    // evil watches gw-1's topics (and its own downlink, to prove the subscription works).
    let evil_watch = Subscription::start_unprobed(
        port,
        &["scs/v1/gw-1/#", "scs/v1/evil/down/#"],
        Some(&MqttAuth { client_id: Some("evil".into()), ..ae.clone() }),
        Duration::from_secs(1),
    );
    // evil publishes gw-1's next seq on gw-1's topic: Mosquitto drops it (ACL), the shim never sees it.
    try_publish_opts(port, &tel, &evil.sign_as("gw-1", &tel, &telemetry("gw-1", 1, 3)), &opts(&ae)).expect("evil connects");
    for seq in 1..=3 {
        try_publish_opts(port, &tel, &gw1.sign(&tel, &telemetry("gw-1", seq, 3)), &opts(&a1)).expect("gw-1 publishes");
    }
    assert_complete(&shim, "gw-1", &[1, 2, 3]);
    assert_eq!(rejections(&shim, "gw-1", "signature"), 0, "the ACL stopped the forgery before the shim");
    // Both online (signed retained status), a command for each: evil sees its own, never gw-1's.
    let online = |c: &GatewayCreds, a: &MqttAuth| {
        let st = topic(&c.id, TopicKind::Status);
        let o = PubOpts { retain: true, ..opts(a) };
        try_publish_opts(port, &st, &c.sign(&st, &status(&c.id, GatewayState::Online)), &o).expect("status");
    };
    online(&gw1, &a1);
    online(&evil, &ae);
    for gw in ["gw-1", "evil"] {
        wait_for(T, "online", || {
            (count(&shim, &format!("SELECT count(*) FROM sensors WHERE id = '{gw}' AND status = 'online'")) == 1).then_some(())
        });
        let r = shim.api().post_json(&format!("/v1/gateways/{gw}/commands"), &json!({"type": "device.info"}));
        assert!(r.is_success(), "{}", r.text());
    }
    assert!(evil_watch.wait_for_topic("evil/down/command", T).is_some(), "evil's own command never arrived");
    std::thread::sleep(Duration::from_secs(1));
    let leaked: Vec<String> = evil_watch.messages().into_iter().map(|(t, _)| t).filter(|t| t.contains("gw-1")).collect();
    assert!(leaked.is_empty(), "evil read gw-1's topics: {leaked:?}");
}

/// Provisioning bundles and the shim's keys are private files.
#[test]
fn bundle_and_key_files_are_private() {
    let shim = Shim::start(ShimOpts::default());
    let creds = shim.add_gateway("gw-modes");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&creds.bundle), 0o600);
    let keys = shim.data_dir().join("keys");
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("cloud-sign.pk8")), 0o600);
    assert_eq!(mode(&keys.join("shim-mqtt.secret")), 0o600);
    // The bundle names the running shim's addresses by default.
    assert_eq!(creds.broker_url, shim.mqtt_url());
    assert_eq!(creds.api_url, shim.http_url());
    // Adding the same id twice is refused; nothing leaks the password into the shim's logs.
    let again = std::process::Command::new(scs_testkit::bin_path("scs-cloud-shim"))
        .args(["gateways", "add", "gw-modes", "--data-dir"])
        .arg(shim.data_dir())
        .arg("--out")
        .arg(shim.data_dir().join("again.toml"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    let _ = BOOT;
    let t = topic("gw-modes", TopicKind::Telemetry);
    let _ = try_publish_opts(shim.mqtt_port().unwrap(), &t, b"x", &as_login("gw-modes", "wrong-password-xyz", "gw-modes"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!shim.logs().contains(&creds.password), "MQTT password in the shim's log");
    assert!(!shim.logs().contains("wrong-password-xyz"), "attempted password in the shim's log");
}

/// Attacks 4 and 5 and command replays against the real agent, through the real shim. The shim is
/// stopped so the agent's queue fills; forged receipts naming every seq and forged, replayed and expired
/// commands are published to gw-1's downlink; the agent deletes nothing and runs nothing; once the
/// shim is back, every seq is stored exactly once (no gap).
#[test]
fn real_agent_ignores_forged_receipts_and_commands() {
    let broker = Mosquitto::start();
    let mut shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    let mut opts = shim.agent_opts("gw-1");
    opts.interval_secs = Some(1);
    let agent = scs_testkit::Agent::start(opts);
    let creds = shim.add_gateway("gw-1");
    let evil = shim.add_gateway("evil");
    wait_for(T, "gw-1 data stored", || (!stored_seqs(&shim, "gw-1").is_empty()).then_some(()));
    let port = broker.port();
    let updates = Subscription::start(port, &["scs/v1/gw-1/up/command"]);
    let cloud_pk8 = std::fs::read(shim.data_dir().join("keys/cloud-sign.pk8")).unwrap();
    let cloud = scs_protocol::cose::SigningKey::from_pkcs8(&cloud_pk8).unwrap();
    shim.kill();
    wait_for(T, "a backlog in the agent's queue", || (scs_testkit::outbox_seqs(&agent.db_path()).len() >= 3).then_some(()));

    // Attack 4: receipts accepting every seq, unsigned, signed by evil as "cloud", and a real cloud
    // receipt for another gateway replayed on gw-1's topic.
    let rt = topic("gw-1", TopicKind::Receipt);
    let all = scs_protocol::Receipt::accepted((1..=500).collect());
    let receipt = encode(&all);
    scs_testkit::publish(port, &rt, &receipt);
    scs_testkit::publish(port, &rt, &evil.sign_as("cloud", &rt, &receipt));
    let other = topic("evil", TopicKind::Receipt);
    scs_testkit::publish(port, &rt, &scs_protocol::cose::sign1(&cloud, b"cloud", other.as_bytes(), &receipt));

    // Attack 5: commands that would run (reboot with confirm, device.info), forged or replayed or expired.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let cmd = |id: &str, ty: &str, confirm: bool, expires: u64| {
        encode(&scs_protocol::CommandRequest {
            v: scs_protocol::PROTOCOL_VERSION,
            id: id.into(),
            command_type: ty.into(),
            params: scs_protocol::Value::map(Vec::<(&str, scs_protocol::Value)>::new()),
            issued: now,
            expires,
            timeout_secs: 10,
            confirm,
            upload: None,
            requested_by: Some("intruder".into()),
            target: None,
        })
    };
    let ct = topic("gw-1", TopicKind::Command);
    let other_ct = topic("evil", TopicKind::Command);
    scs_testkit::publish(port, &ct, &cmd("atk-plain", "device.info", false, now + 60_000));
    scs_testkit::publish(port, &ct, &evil.sign_as("cloud", &ct, &cmd("atk-reboot", "device.reboot", true, now + 60_000)));
    let for_evil =
        scs_protocol::cose::sign1(&cloud, b"cloud", other_ct.as_bytes(), &cmd("atk-replay", "device.info", false, now + 60_000));
    scs_testkit::publish(port, &ct, &for_evil);
    let expired = scs_protocol::cose::sign1(&cloud, b"cloud", ct.as_bytes(), &cmd("atk-expired", "device.info", false, now - 1));
    scs_testkit::publish(port, &ct, &expired);
    std::thread::sleep(Duration::from_secs(2));
    assert!(scs_testkit::outbox_seqs(&agent.db_path()).len() >= 3, "forged receipts emptied the agent's queue");
    let seen: Vec<scs_protocol::CommandUpdate> = updates
        .messages()
        .into_iter()
        .filter_map(|(t, p)| match scs_protocol::decode_uplink(&t, creds.open(&t, &p)?) {
            Ok((_, scs_protocol::Uplink::Command(u))) => Some(u),
            _ => None,
        })
        .collect();
    for u in &seen {
        assert!(
            !matches!(
                u.state,
                scs_protocol::CommandState::Accepted
                    | scs_protocol::CommandState::Running
                    | scs_protocol::CommandState::Succeeded
            ),
            "the agent acted on a forged, replayed or expired command: {u:?}"
        );
        assert_eq!(u.id, "atk-expired", "only the genuine (expired) command may be answered: {u:?}");
    }

    // Back online: every seq the agent produced is stored exactly once. The only seq allowed to be
    // missing is the agent's answer to the expired command, which the shim refuses (no such command).
    shim.start_again();
    let stored = wait_for(Duration::from_secs(30), "the backlog receipted", || {
        let s = stored_seqs(&shim, "gw-1");
        // Receipted rows wait in the agent's file for its next commit: what is left must be stored.
        let left = scs_testkit::outbox_seqs(&agent.db_path());
        (left.iter().all(|q| s.contains(&(*q as i64))) && s.len() > 3).then_some(s)
    });
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique, stored, "every seq exactly once");
    let max = *stored.last().unwrap();
    let missing: Vec<i64> = (1..=max).filter(|s| !stored.contains(s)).collect();
    assert_eq!(missing.len() as i64, rejections(&shim, "gw-1", "command_update"), "missing {missing:?}");
    assert!(missing.len() <= 1, "data lost: {missing:?}");
    assert_eq!(count(&shim, "SELECT count(*) FROM gaps WHERE gateway_id = 'gw-1'"), 0, "no data dropped");
    let _ = json!(null);
}

/// Attack 8 on the shim's side: made-up gateways create nothing, and one gateway's inventory cannot
/// grow past `--max-children` sensors; both are counted.
#[test]
fn fake_gateways_and_sensor_floods_are_bounded() {
    let shim = Shim::start(ShimOpts { args: vec!["--max-children".into(), "100".into()], ..ShimOpts::default() });
    let api = shim.api();
    let fakes: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| {
            let gw = format!("fake-{i}");
            (topic(&gw, TopicKind::Telemetry), telemetry(&gw, 1, 1))
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = fakes.iter().map(|(t, p)| (t.as_str(), p.as_slice())).collect();
    let r = api.post("/v1/ingest", "application/cbor", &http_batch(&refs)).json();
    let results = r["results"].as_array().expect("results");
    assert!(results.iter().all(|x| x["status"] == "rejected"), "a made-up gateway's uplink was accepted");
    assert_eq!(count(&shim, "SELECT count(*) FROM sensors"), 0);

    let gw = shim.add_gateway("gw-flood");
    let t = topic("gw-flood", TopicKind::Inventory);
    let sensors = std::iter::once(("gw-flood".to_owned(), "EDGE_CONTROLLER", None))
        .chain((0..300).map(|i| (format!("gw-flood-cam-{i}"), "CAMERA", Some("gw-flood".to_owned()))))
        .map(|(id, ty, parent)| scs_protocol::SensorInfo { id, sensor_type: ty.into(), parent, name: None, attrs: None })
        .collect();
    let inv = scs_protocol::Inventory { v: 1, gateway: "gw-flood".into(), boot: 1, seq: 1, ts: 1, sensors, agent: None };
    let signed = gw.sign(&t, &encode(&inv));
    let r = api.post("/v1/ingest", "application/cbor", &http_batch(&[(t.as_str(), signed.as_slice())])).json();
    assert_eq!(r["results"][0]["status"], "stored", "{r}");
    assert_eq!(count(&shim, "SELECT count(*) FROM sensors WHERE gateway_id = 'gw-flood'"), 101, "itself + 100 children");
    assert_eq!(rejections(&shim, "gw-flood", "too_many_sensors"), 200);
}
