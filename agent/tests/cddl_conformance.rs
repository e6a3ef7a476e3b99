//! Real output against the contract: the `scs-agent` binary talks to Mosquitto (and to a real
//! `scs-cloud-shim`), a `mosquitto_sub` captures every payload, and each one is validated against its rule
//! in `docs/protocol.cddl` with the independent `cddl` crate — never with our own decoder.
//! Mutated copies of the same real payloads (a field of the wrong type, truncation) must fail validation.
//! With a provisioned gateway every message is a COSE_Sign1: the envelope is validated against
//! `signed-uplink`/`signed-downlink`, its signature verified with the sender's key for the topic, and the
//! message inside validated against its own rule.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use scs_protocol::cose::{verify1, VerifyingKey, KID_CLOUD};
use scs_protocol::{encode, CommandRequest, Value};
use scs_testkit::cddl::validate;
use scs_testkit::{free_port, wait_until, Agent, AgentOpts, GatewayCreds, Mosquitto, Shim, ShimOpts, Subscription};

const T: Duration = Duration::from_secs(20);

fn config(nvr_port: u16) -> String {
    format!(
        r#"
[[devices]]
id = "cam-cddl-01"
type = "CAMERA"
name = "Conformance camera"
address = "127.0.0.1:1"
vendor = "Axis"
model = "P1448-LE"

[[devices]]
id = "nvr-cddl-01"
type = "NVR"
address = "127.0.0.1:{nvr_port}"
[devices.attrs]
channels = "16"
"#
    )
}

/// The CDDL rule for a captured topic.
fn rule_for(topic: &str) -> &'static str {
    let suffix = topic.splitn(4, '/').nth(3).unwrap_or_default();
    match suffix {
        "up/telemetry" => "telemetry-batch",
        "up/inventory" => "inventory",
        "up/command" => "command-update",
        "status" => "status",
        "down/receipt" => "receipt",
        "down/command" => "command-request",
        "down/cancel" => "command-cancel",
        other => panic!("unexpected topic suffix {other:?} ({topic})"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Validates every captured message against its rule and the direction's choice rule; returns how many
/// messages each rule saw. With `signed` (the gateway's credentials, which carry the cloud's public key)
/// each message must be a COSE_Sign1 envelope matching `signed-uplink`/`signed-downlink` that verifies
/// for its topic with the sender's key (gateway uplink, cloud downlink); the payload inside is what is
/// validated against the message rules.
fn validate_all(
    messages: &[(String, Vec<u8>)],
    signed: Option<&GatewayCreds>,
) -> std::collections::BTreeMap<&'static str, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for (topic, payload) in messages {
        let down = topic.contains("/down/");
        let message: &[u8] = match signed {
            None => payload,
            Some(creds) => {
                let envelope = if down { "signed-downlink" } else { "signed-uplink" };
                for rule in [envelope, "signed-message"] {
                    if let Err(e) = validate(rule, payload) {
                        panic!("{topic}: real envelope does not match CDDL rule {rule}: {e}\nCBOR: {}", hex(payload));
                    }
                }
                *seen.entry(envelope).or_insert(0) += 1;
                let inner = if down { open_downlink(creds, topic, payload) } else { creds.open(topic, payload) };
                inner.unwrap_or_else(|| panic!("{topic}: envelope does not verify with the sender's key: {}", hex(payload)))
            }
        };
        let rule = rule_for(topic);
        if let Err(e) = validate(rule, message) {
            panic!("{topic}: real payload does not match CDDL rule {rule}: {e}\nCBOR: {}", hex(message));
        }
        let any = if down { "downlink-message" } else { "uplink-message" };
        if let Err(e) = validate(any, message) {
            panic!("{topic}: real payload does not match {any}: {e}");
        }
        *seen.entry(rule).or_insert(0) += 1;
    }
    seen
}

/// The payload of a downlink the cloud signed for `topic`, `None` if it does not verify.
fn open_downlink<'a>(creds: &GatewayCreds, topic: &str, signed: &'a [u8]) -> Option<&'a [u8]> {
    let cloud = VerifyingKey(creds.cloud_public_key);
    verify1(signed, topic.as_bytes(), |kid| (kid == KID_CLOUD).then_some(cloud)).ok().map(|v| v.payload)
}

/// Rebuilds a COSE_Sign1 envelope from its four parts, each already encoded (to break one at a time).
fn sign1_parts(protected: &[u8], unprotected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    // 0xd2: tag 18 (COSE_Sign1); 0x84: array of four.
    let mut out = vec![0xd2, 0x84];
    for part in [protected, unprotected, payload, signature] {
        out.extend_from_slice(part);
    }
    out
}

/// The four encoded parts of a real COSE_Sign1 envelope.
fn envelope_parts(signed: &[u8]) -> [Vec<u8>; 4] {
    let mut d = minicbor::Decoder::new(signed);
    assert_eq!(d.tag().expect("tag"), minicbor::data::Tag::new(18), "not a COSE_Sign1 tag");
    assert_eq!(d.array().expect("array"), Some(4), "COSE_Sign1 has four parts");
    std::array::from_fn(|_| {
        let start = d.position();
        d.skip().expect("part");
        signed[start..d.position()].to_vec()
    })
}

fn count(sub: &Subscription, suffix: &str) -> usize {
    sub.messages().iter().filter(|(t, _)| t.ends_with(suffix)).count()
}

/// Status messages seen so far whose state is `state` (the agent's own, or the broker's will).
fn statuses(sub: &Subscription, state: scs_protocol::GatewayState) -> usize {
    sub.messages()
        .iter()
        .filter(|(t, _)| t.ends_with("/status"))
        .filter(
            |(t, p)| matches!(scs_protocol::decode_uplink(t, p), Ok((_, scs_protocol::Uplink::Status(s))) if s.state == state),
        )
        .count()
}

/// Replaces the value of top-level map key `key` with the already-encoded `replacement`.
fn replace_field(payload: &[u8], key: u64, replacement: &[u8]) -> Vec<u8> {
    let mut d = minicbor::Decoder::new(payload);
    let n = d.map().expect("message is a map").expect("definite-length map");
    for _ in 0..n {
        let k = d.u64().expect("integer key");
        let start = d.position();
        d.skip().expect("value");
        if k == key {
            let end = d.position();
            return [&payload[..start], replacement, &payload[end..]].concat();
        }
    }
    panic!("key {key} not in message {}", hex(payload));
}

fn command_request(id: &str, command_type: &str) -> Vec<u8> {
    encode(&CommandRequest {
        v: scs_protocol::PROTOCOL_VERSION,
        id: id.into(),
        command_type: command_type.into(),
        params: Value::map(Vec::<(String, Value)>::new()),
        issued: scs_testkit::now_ms(),
        expires: scs_testkit::now_ms() + 120_000,
        timeout_secs: 30,
        confirm: false,
        upload: None,
        requested_by: Some("cddl-conformance".into()),
        target: None,
    })
}

#[test]
fn agent_uplink_output_matches_cddl() {
    let broker = Mosquitto::start();
    let gw = "gw-cddl-1";
    let sub = broker.subscribe(&format!("scs/v1/{gw}/#"));
    let nvr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake NVR port");
    let nvr_port = nvr.local_addr().expect("addr").port();
    let mut opts = AgentOpts::new(gw, &broker.url());
    opts.config_toml = Some(config(nvr_port));
    let mut agent = Agent::start(opts);

    assert!(
        wait_until(T, || count(&sub, "/status") >= 1 && count(&sub, "/up/inventory") >= 1 && count(&sub, "/up/telemetry") >= 3),
        "agent did not publish status, inventory and 3 telemetry batches; got {:?}",
        sub.messages().iter().map(|(t, p)| (t.clone(), p.len())).collect::<Vec<_>>()
    );

    // A command straight into MQTT (no shim): the agent answers with command updates on up/command.
    broker.publish(&format!("scs/v1/{gw}/down/command"), &command_request("cmd-cddl-info", "device.info"));
    broker.publish(&format!("scs/v1/{gw}/down/command"), &command_request("cmd-cddl-bogus", "no.such.command"));
    let updates = wait_until(T, || count(&sub, "/up/command") >= 2);

    // Graceful stop publishes the offline status; kill -9 after a restart makes the broker publish the will.
    // Counted by state and before each step: the broker publishes the will as soon as the socket
    // closes, which can be before this thread runs again.
    use scs_protocol::GatewayState::{Offline, Online};
    let online = statuses(&sub, Online);
    agent.kill();
    agent.start_again();
    assert!(wait_until(T, || statuses(&sub, Online) > online), "no online status after restart");
    let offline = statuses(&sub, Offline);
    agent.kill9();
    assert!(wait_until(T, || statuses(&sub, Offline) > offline), "no last-will status after kill -9");

    // Only what the agent (or the broker, for its will) published; our own down/command messages aside.
    let msgs: Vec<_> = sub.messages().into_iter().filter(|(t, _)| !t.contains("/down/")).collect();
    let seen = validate_all(&msgs, None);
    eprintln!("validated real agent payloads per rule: {seen:?}");
    assert!(seen.get("telemetry-batch").copied().unwrap_or(0) >= 3);
    assert!(seen.get("inventory").copied().unwrap_or(0) >= 2, "inventory after each start");
    assert!(seen.get("status").copied().unwrap_or(0) >= 4, "online, offline, online, will");
    assert!(updates, "the agent sent no command updates for the two commands (executor missing?)");

    // The inventory announces the configured children with the gateway as parent.
    let inv = sub.payloads_on(&format!("scs/v1/{gw}/up/inventory")).remove(0);
    let (_, decoded) = scs_protocol::decode_uplink(&format!("scs/v1/{gw}/up/inventory"), &inv).expect("inventory decodes");
    let scs_protocol::Uplink::Inventory(inv_msg) = decoded else { panic!("not an inventory") };
    let kinds: Vec<(String, Option<String>)> =
        inv_msg.sensors.iter().map(|s| (s.sensor_type.clone(), s.parent.clone())).collect();
    assert_eq!(kinds[0], ("EDGE_CONTROLLER".to_owned(), None), "gateway first: {kinds:?}");
    assert!(kinds.contains(&("CAMERA".to_owned(), Some(gw.to_owned()))), "{kinds:?}");
    assert!(kinds.contains(&("NVR".to_owned(), Some(gw.to_owned()))), "{kinds:?}");

    // The test can fail: the same real payloads, broken one field at a time, are refused.
    let tel = sub.payloads_on(&format!("scs/v1/{gw}/up/telemetry")).remove(0);
    let text = minicbor::to_vec("42").expect("encode");
    assert!(validate("telemetry-batch", &replace_field(&tel, 3, &text)).is_err(), "seq as text accepted");
    assert!(validate("telemetry-batch", &replace_field(&tel, 1, &minicbor::to_vec(7u8).expect("encode"))).is_err());
    assert!(validate("telemetry-batch", &tel[..tel.len() - 1]).is_err(), "truncated batch accepted");
    assert!(validate("inventory", &tel).is_err(), "telemetry accepted as inventory");
    assert!(validate("inventory", &replace_field(&inv, 5, &minicbor::to_vec(1u8).expect("encode"))).is_err());
    let status = sub.payloads_on(&format!("scs/v1/{gw}/status")).remove(0);
    assert!(validate("status", &replace_field(&status, 2, &minicbor::to_vec("online").expect("encode"))).is_err());
    drop(nvr);
}

#[test]
fn shim_downlink_output_matches_cddl() {
    let broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    let gw = "gw-cddl-2";
    let sub = broker.subscribe(&format!("scs/v1/{gw}/#"));
    // A provisioned gateway: the shim receipts only uplinks that verify with this gateway's key.
    let creds = shim.add_gateway(gw);
    let mut opts = shim.agent_opts(gw);
    opts.config_toml = Some(config(free_port()));
    opts.api_url = Some(shim.http_url());
    let _agent = Agent::start(opts);

    assert!(wait_until(T, || count(&sub, "/down/receipt") >= 2), "no receipts from the shim: {:?}", sub.messages().len());
    let api = shim.api();
    assert!(
        wait_until(T, || api.get(&format!("/v1/gateways/{gw}/commands")).is_success() && count(&sub, "/status") >= 1),
        "gateway unknown to the shim"
    );
    for (ty, params) in [("device.info", serde_json::json!({})), ("diag.log_bundle", serde_json::json!({}))] {
        let r = api.post_json(&format!("/v1/gateways/{gw}/commands"), &serde_json::json!({"type": ty, "params": params}));
        assert!(r.is_success(), "POST {ty} command: HTTP {} {}", r.status, r.text());
    }
    assert!(wait_until(T, || count(&sub, "/down/command") >= 2), "the shim did not deliver both commands");
    assert!(wait_until(T, || count(&sub, "/up/command") >= 2), "no command updates from the agent");

    let msgs = sub.messages();
    let seen = validate_all(&msgs, Some(&creds));
    eprintln!("validated real agent + shim payloads per rule: {seen:?}");
    for rule in ["signed-uplink", "signed-downlink", "receipt", "command-request", "command-update", "telemetry-batch"] {
        assert!(seen.get(rule).copied().unwrap_or(0) >= 1, "no {rule} validated: {seen:?}");
    }

    // The test can fail: a real receipt, broken inside or in its envelope, is refused.
    let receipt_topic = format!("scs/v1/{gw}/down/receipt");
    let signed = sub.payloads_on(&receipt_topic).remove(0);
    let rec = open_downlink(&creds, &receipt_topic, &signed).expect("the shim's receipt verifies").to_vec();
    assert!(validate("receipt", &replace_field(&rec, 1, &minicbor::to_vec("1").expect("encode"))).is_err());
    assert!(validate("command-request", &rec).is_err(), "receipt accepted as a command");
    assert!(validate("receipt", &signed).is_err(), "an envelope accepted as a bare receipt");
    assert!(validate("signed-downlink", &rec).is_err(), "a bare receipt accepted as a signed downlink");
    assert!(validate("signed-uplink", &signed).is_err(), "a signed receipt accepted as a signed uplink");
    let [protected, unprotected, payload, signature] = envelope_parts(&signed);
    assert!(validate("signed-downlink", &sign1_parts(&protected, &unprotected, &payload, &signature)).is_ok());
    let bstr = |b: &[u8]| minicbor::to_vec(<&minicbor::bytes::ByteSlice>::from(b)).expect("encode");
    // alg ES256 (-7) instead of EdDSA.
    let es256 = bstr(&minicbor::to_vec(std::collections::BTreeMap::from([(1i64, -7i64)])).expect("encode"));
    assert!(validate("signed-downlink", &sign1_parts(&es256, &unprotected, &payload, &signature)).is_err(), "alg -7 accepted");
    // A 63-byte signature.
    let short = bstr(&[0u8; 63]);
    assert!(validate("signed-downlink", &sign1_parts(&protected, &unprotected, &payload, &short)).is_err(), "short signature");
    // No kid.
    let no_kid = minicbor::to_vec(std::collections::BTreeMap::<i64, i64>::new()).expect("encode");
    assert!(validate("signed-downlink", &sign1_parts(&protected, &no_kid, &payload, &signature)).is_err(), "no kid accepted");
    // A payload that is not a downlink message: the receipt with an unknown protocol version, and a real
    // telemetry batch (an uplink message) moved into the downlink envelope.
    let bad_inner = bstr(&replace_field(&rec, 0, &minicbor::to_vec(7u8).expect("encode")));
    assert!(
        validate("signed-downlink", &sign1_parts(&protected, &unprotected, &bad_inner, &signature)).is_err(),
        "a broken receipt accepted inside an envelope"
    );
    let tel_signed = sub.payloads_on(&format!("scs/v1/{gw}/up/telemetry")).remove(0);
    let [_, _, tel_payload, _] = envelope_parts(&tel_signed);
    assert!(validate("signed-uplink", &tel_signed).is_ok());
    assert!(
        validate("signed-downlink", &sign1_parts(&protected, &unprotected, &tel_payload, &signature)).is_err(),
        "an uplink message accepted inside a downlink envelope"
    );
    // And the signature binds the topic: the same receipt does not verify for another gateway's topic.
    assert!(open_downlink(&creds, "scs/v1/gw-cddl-3/down/receipt", &signed).is_none(), "receipt verifies for another topic");
}
