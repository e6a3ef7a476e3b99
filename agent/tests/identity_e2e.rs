#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! End to end, the real `scs-agent` against a real Mosquitto with `mosquitto_pub`/`mosquitto_sub` playing
//! the cloud and an attacker on the LAN: `provision` installs a bundle with safe modes (and refuses a bad
//! one), `run` refuses to start without an identity, every uplink (status and its Last Will included) is a
//! COSE_Sign1 by the gateway's key for its topic, and forged, tampered or cross-gateway downlinks are
//! refused: a forged receipt deletes nothing, a forged command never runs, while the cloud's own signed
//! receipt and command work.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use scs_protocol::cose::{self, SigningKey, VerifyingKey, KID_CLOUD};
use scs_protocol::topics::topic;
use scs_protocol::{decode_uplink, encode, CommandRequest, CommandState, Receipt, TopicKind, Uplink, Value, PROTOCOL_VERSION};
use scs_testkit::{bin_path, outbox_seqs, wait_until, Agent, AgentOpts, Mosquitto, Subscription, TempDir};

const T: Duration = Duration::from_secs(20);

/// Keys made here, as `scs-cloud-shim gateways add` would make them.
struct Keys {
    cloud: SigningKey,
    gateway: SigningKey,
    gateway_pkcs8: Vec<u8>,
    password: String,
}

fn keys() -> Keys {
    let (gateway, gateway_pkcs8) = SigningKey::generate().expect("gateway key");
    let cloud = SigningKey::generate().expect("cloud key").0;
    Keys { cloud, gateway, gateway_pkcs8, password: "Zx8-identity-e2e-password-4242".into() }
}

fn bundle(gw: &str, broker: &str, k: &Keys) -> String {
    format!(
        "gateway_id = \"{gw}\"\nbroker_url = \"{broker}\"\napi_url = \"http://127.0.0.1:9\"\nmqtt_username = \"{gw}\"\n\
         mqtt_password = \"{}\"\nsigning_key = \"{}\"\ncloud_public_key = \"{}\"\n",
        k.password,
        STANDARD.encode(&k.gateway_pkcs8),
        STANDARD.encode(k.cloud.public_key())
    )
}

fn provision(bundle_path: &Path, data_dir: &Path) -> std::process::Output {
    Command::new(bin_path("scs-agent"))
        .arg("provision")
        .arg(bundle_path)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run scs-agent provision")
}

/// A provisioned agent on `broker` whose reboot command appends to `{dir}/reboots`.
fn provisioned_agent(dir: &Path, gw: &str, broker: &Mosquitto, k: &Keys) -> (Agent, PathBuf) {
    let b = dir.join(format!("{gw}.bundle.toml"));
    std::fs::write(&b, bundle(gw, &broker.url(), k)).expect("write bundle");
    let data = dir.join(format!("{gw}-data"));
    let out = provision(&b, &data);
    assert!(out.status.success(), "provision failed: {}", String::from_utf8_lossy(&out.stderr));
    let marker = dir.join("reboots");
    let mut opts = AgentOpts::new(gw, &broker.url());
    opts.data_dir = Some(data);
    opts.config_toml = Some(format!("[commands]\nreboot_command = [\"sh\", \"-c\", \"echo x >> {}\"]\n", marker.display()));
    (Agent::start(opts), marker)
}

fn verify(topic_name: &str, payload: &[u8], gw: &str, key: VerifyingKey) -> Result<Vec<u8>, cose::CoseError> {
    cose::verify1(payload, topic_name.as_bytes(), |kid| (kid == gw.as_bytes()).then_some(key)).map(|v| v.payload.to_vec())
}

fn command(id: &str, ty: &str, confirm: bool) -> CommandRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    CommandRequest {
        v: PROTOCOL_VERSION,
        id: id.into(),
        command_type: ty.into(),
        params: Value::map(Vec::<(String, Value)>::new()),
        issued: now,
        expires: now + 60_000,
        timeout_secs: 30,
        confirm,
        upload: None,
        requested_by: Some("attacker".into()),
        target: None,
    }
}

/// Command updates for `id` that verify as the gateway's.
fn updates_for(sub: &Subscription, gw: &str, key: VerifyingKey, id: &str) -> Vec<CommandState> {
    let t = topic(gw, TopicKind::CommandUpdate);
    sub.payloads_on(&t)
        .iter()
        .filter_map(|p| verify(&t, p, gw, key).ok())
        .filter_map(|p| match decode_uplink(&t, &p) {
            Ok((_, Uplink::Command(u))) if u.id == id => Some(u.state),
            _ => None,
        })
        .collect()
}

#[test]
fn provision_installs_safely_and_refuses_a_bad_bundle() {
    let dir = TempDir::new("id-provision");
    let k = keys();
    let data = dir.join("agent");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, bundle("gw-p", "mqtt://127.0.0.1:1", &k).replace("cloud_public_key = \"", "cloud_public_key = \"AA"))
        .expect("write");
    let out = provision(&bad, &data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cloud_public_key"), "{err}");
    assert!(!err.contains(&k.password), "the error quotes the password: {err}");
    assert!(!data.join("identity.toml").exists());

    let good = dir.join("good.toml");
    std::fs::write(&good, bundle("gw-p", "mqtt://127.0.0.1:1", &k)).expect("write");
    let out = provision(&good, &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("identity.toml")), 0o600);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("gw-p") && !stdout.contains(&k.password), "{stdout}");

    // print-config takes the identity and shows no secret.
    let out = Command::new(bin_path("scs-agent")).arg("print-config").arg("--data-dir").arg(&data).output().expect("print");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("gateway_id = \"gw-p\""), "{shown}");
    assert!(!shown.contains(&k.password) && !shown.contains(&STANDARD.encode(&k.gateway_pkcs8)), "{shown}");
}

#[test]
fn run_without_identity_is_refused() {
    let dir = TempDir::new("id-none");
    let out = Command::new(bin_path("scs-agent"))
        .args(["run", "--gateway-id", "gw-none", "--broker", "mqtt://127.0.0.1:9"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran without an identity");
    assert!(err.contains("no identity") && err.contains("scs-agent provision"), "{err}");
}

#[test]
fn uplinks_are_signed_and_only_authentic_downlinks_act() {
    let dir = TempDir::new("id-e2e");
    let broker = Mosquitto::start();
    let gw = "gw-id-1";
    let k = keys();
    let gw_key = k.gateway.verifying_key();
    let sub = broker.subscribe(&format!("scs/v1/{gw}/#"));
    let (agent, marker) = provisioned_agent(dir.path(), gw, &broker, &k);

    // Every uplink verifies with the gateway's key for its own topic, and only for it.
    let tel = topic(gw, TopicKind::Telemetry);
    assert!(wait_until(T, || sub.payloads_on(&tel).len() >= 2), "no telemetry");
    for (t, p) in sub.messages() {
        if t.contains("/down/") {
            continue;
        }
        let inner = verify(&t, &p, gw, gw_key).unwrap_or_else(|e| panic!("uplink on {t} does not verify: {e}"));
        decode_uplink(&t, &inner).unwrap_or_else(|e| panic!("signed payload on {t} does not decode: {e}"));
        let other = t.replace(gw, "gw-id-2");
        assert!(verify(&other, &p, gw, gw_key).is_err(), "a {t} message also verifies for {other}");
    }
    let status = sub.payloads_on(&topic(gw, TopicKind::Status));
    assert!(!status.is_empty(), "no status");

    let db = agent.db_path();
    assert!(wait_until(T, || outbox_seqs(&db).len() >= 2), "nothing queued");
    let queued: Vec<u64> = outbox_seqs(&db).into_iter().collect();
    let receipt = encode(&Receipt::accepted(queued.clone()));
    let rt = topic(gw, TopicKind::Receipt);
    let attacker = SigningKey::generate().expect("key").0;
    // 1. bare CBOR; 2. signed by another key under kid "cloud"; 3. the cloud's receipt for gw-id-2 replayed
    // on gw-id-1's topic; 4. the cloud's receipt with a flipped signature bit.
    let mut tampered = cose::sign1(&k.cloud, KID_CLOUD, rt.as_bytes(), &receipt);
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    let forged = [
        receipt.clone(),
        cose::sign1(&attacker, KID_CLOUD, rt.as_bytes(), &receipt),
        cose::sign1(&k.cloud, KID_CLOUD, topic("gw-id-2", TopicKind::Receipt).as_bytes(), &receipt),
        tampered,
    ];
    for f in &forged {
        broker.publish(&rt, f);
    }
    // Forged commands: a confirmed reboot, bare and signed by the wrong party or for another gateway.
    let ct = topic(gw, TopicKind::Command);
    let reboot = encode(&command("forged-reboot", "device.reboot", true));
    broker.publish(&ct, &reboot);
    broker.publish(&ct, &cose::sign1(&attacker, KID_CLOUD, ct.as_bytes(), &reboot));
    broker.publish(&ct, &cose::sign1(&k.gateway, KID_CLOUD, ct.as_bytes(), &reboot));
    let for_gw2 = encode(&command("replayed-reboot", "device.reboot", true));
    broker.publish(&ct, &cose::sign1(&k.cloud, KID_CLOUD, topic("gw-id-2", TopicKind::Command).as_bytes(), &for_gw2));

    // The agent logged each refusal; nothing was deleted or run.
    assert!(
        wait_until(T, || std::fs::read_to_string(agent.log_path()).unwrap_or_default().matches("not authentic").count() >= 8),
        "refusals not logged:\n{}",
        std::fs::read_to_string(agent.log_path()).unwrap_or_default()
    );
    let still: Vec<u64> = outbox_seqs(&db).into_iter().collect();
    for s in &queued {
        assert!(still.contains(s), "seq {s} was deleted by a forged receipt (outbox now {still:?})");
    }
    assert!(!marker.exists(), "a forged reboot ran");
    assert!(updates_for(&sub, gw, gw_key, "forged-reboot").is_empty(), "a forged command was answered");
    assert!(updates_for(&sub, gw, gw_key, "replayed-reboot").is_empty(), "a replayed command was answered");

    // The cloud's own signed receipt deletes, its signed command runs.
    broker.publish(&rt, &cose::sign1(&k.cloud, KID_CLOUD, rt.as_bytes(), &receipt));
    assert!(wait_until(T, || queued.iter().all(|s| !outbox_seqs(&db).contains(s))), "signed receipt did not delete");
    let info = encode(&command("real-info", "device.info", false));
    broker.publish(&ct, &cose::sign1(&k.cloud, KID_CLOUD, ct.as_bytes(), &info));
    assert!(
        wait_until(T, || updates_for(&sub, gw, gw_key, "real-info").contains(&CommandState::Succeeded)),
        "signed command did not run"
    );
    let log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
    assert!(!log.contains(&k.password) && !log.contains(&STANDARD.encode(&k.gateway_pkcs8)), "a secret is in the log");
    drop(agent);

    // A retained status (here: the Last Will or the goodbye) is signed too.
    let st = topic(gw, TopicKind::Status);
    for p in sub.payloads_on(&st) {
        verify(&st, &p, gw, gw_key).expect("status verifies");
    }
}

/// Error texts of the `rejected` updates for `id` that verify as the gateway's.
fn rejections_for(sub: &Subscription, gw: &str, key: VerifyingKey, id: &str) -> Vec<String> {
    let t = topic(gw, TopicKind::CommandUpdate);
    sub.payloads_on(&t)
        .iter()
        .filter_map(|p| verify(&t, p, gw, key).ok())
        .filter_map(|p| match decode_uplink(&t, &p) {
            Ok((_, Uplink::Command(u))) if u.id == id && u.state == CommandState::Rejected => u.error,
            _ => None,
        })
        .collect()
}

#[test]
fn the_agent_refuses_targets_it_does_not_have_or_the_command_does_not_accept() {
    let dir = TempDir::new("id-target");
    let broker = Mosquitto::start();
    let gw = "gw-target-1";
    let k = keys();
    let gw_key = k.gateway.verifying_key();
    let sub = broker.subscribe(&format!("scs/v1/{gw}/#"));
    let b = dir.path().join("bundle.toml");
    std::fs::write(&b, bundle(gw, &broker.url(), &k)).expect("write bundle");
    let data = dir.path().join("data");
    assert!(provision(&b, &data).status.success());
    let mut opts = AgentOpts::new(gw, &broker.url());
    opts.data_dir = Some(data);
    // Addresses nobody listens on: every command below must be refused before any device is touched.
    opts.config_toml = Some(
        "[[devices]]\nid = \"cam-1\"\ntype = \"CAMERA\"\naddress = \"127.0.0.1:9\"\ndriver = \"onvif\"\n\
         [[devices]]\nid = \"nvr-1\"\ntype = \"NVR\"\naddress = \"127.0.0.1:9\"\ndriver = \"hikvision\"\n"
            .into(),
    );
    let _agent = Agent::start(opts);
    assert!(wait_until(T, || !sub.payloads_on(&topic(gw, TopicKind::Telemetry)).is_empty()), "agent not up");
    let ct = topic(gw, TopicKind::Command);
    let send = |id: &str, ty: &str, target: Option<&str>, confirm: bool| {
        let mut c = command(id, ty, confirm);
        c.target = target.map(str::to_owned);
        broker.publish(&ct, &cose::sign1(&k.cloud, KID_CLOUD, ct.as_bytes(), &encode(&c)));
    };
    send("t-stranger", "camera.snapshot", Some("cam-elsewhere"), false);
    send("t-class", "camera.snapshot", Some("nvr-1"), false);
    send("t-none", "camera.reboot", None, true);
    send("t-gateway-only", "device.info", Some("cam-1"), false);
    for (id, want) in [
        ("t-stranger", "target cam-elsewhere is not a device of gateway gw-target-1"),
        ("t-class", "camera.snapshot targets camera, not target nvr-1 (type NVR)"),
        ("t-none", "camera.reboot targets camera, nvr: name the target device"),
        ("t-gateway-only", "device.info targets gateway, not target cam-1 (type CAMERA)"),
    ] {
        assert!(
            wait_until(T, || rejections_for(&sub, gw, gw_key, id).iter().any(|e| e.contains(want))),
            "{id}: no rejection naming {want:?}; got {:?}",
            rejections_for(&sub, gw, gw_key, id)
        );
    }
}
