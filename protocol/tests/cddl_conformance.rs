//! Every message type, as encoded by scs-protocol, validates against `docs/protocol.cddl` with the
//! independent `cddl` crate; hand-broken encodings do not. Real agent and shim output is checked in
//! agent/tests/cddl_conformance.rs.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use minicbor::Encoder;
use scs_protocol::command::{ArtifactMeta, CommandCancel, CommandRequest, CommandState, CommandUpdate, UploadGrant};
use scs_protocol::inventory::{AgentInfo, Inventory, SensorInfo};
use scs_protocol::telemetry::{DeviceEvent, DeviceReport, EventKind, Gap, TelemetryBatch};
use scs_protocol::{encode, GatewayState, Metric, Receipt, Status, Value, PROTOCOL_VERSION};
use scs_testkit::cddl::validate;

fn ok(rule: &str, bytes: &[u8]) {
    if let Err(e) = validate(rule, bytes) {
        panic!("expected valid {rule}, got: {e}\nCBOR: {}", hex(bytes));
    }
}

fn bad(rule: &str, bytes: &[u8], why: &str) {
    assert!(validate(rule, bytes).is_err(), "{rule} accepted an invalid message ({why}): {}", hex(bytes));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn batch(gap: bool) -> TelemetryBatch {
    let mut b = TelemetryBatch::new("gw-1", u64::MAX - 3, 42, 1_700_000_000_000);
    b.devices.push(DeviceReport {
        sensor: "gw-1".into(),
        ts: 1_700_000_000_000,
        metrics: vec![
            Metric::new("cpu.usage_pct", 12.5),
            Metric::new("cpu.usage_pct", 0.1),
            Metric::new("mem.total_bytes", 1u64 << 40),
            Metric::new("load.1m", -1i64),
            Metric::labelled("net.rx_bytes", "eth0", 123_456_789u64),
            Metric::new("radar.objects", 7i64),
            Metric::labelled("custom.metric", "", 1.0),
        ],
    });
    b.devices.push(DeviceReport { sensor: "cam-01".into(), ts: 1, metrics: vec![] });
    if gap {
        b.gap = Some(Gap { dropped: 3, first_seq: 10, last_seq: 12 });
        let mut attrs = BTreeMap::new();
        attrs.insert("old".to_owned(), "DS-1".to_owned());
        attrs.insert("new".to_owned(), "DS-2".to_owned());
        b.events = Some(vec![
            DeviceEvent {
                sensor: "cam-01".into(),
                ts: 1_700_000_000_000,
                kind: EventKind::REPLACED.into(),
                detail: Some("serial DS-1 -> DS-2".into()),
                attrs: Some(attrs),
            },
            DeviceEvent::new("cam-01", 1_700_000_000_001, EventKind::STREAM_LOST),
        ]);
    }
    b
}

fn inventory(full: bool) -> Inventory {
    let mut attrs = BTreeMap::new();
    attrs.insert("vendor".to_owned(), "Axis".to_owned());
    let mut sensors =
        vec![SensorInfo { id: "gw-1".into(), sensor_type: "EDGE_CONTROLLER".into(), parent: None, name: None, attrs: None }];
    if full {
        sensors.push(SensorInfo {
            id: "cam-01".into(),
            sensor_type: "CAMERA".into(),
            parent: Some("gw-1".into()),
            name: Some("North gate".into()),
            attrs: Some(attrs),
        });
    }
    Inventory {
        v: PROTOCOL_VERSION,
        gateway: "gw-1".into(),
        boot: 7,
        seq: 1,
        ts: 1_700_000_000_000,
        sensors,
        agent: full.then(|| AgentInfo {
            version: "0.1.0".into(),
            arch: "armv7".into(),
            os: Some("linux".into()),
            hostname: Some("gw".into()),
        }),
    }
}

fn update(state: CommandState, full: bool) -> CommandUpdate {
    CommandUpdate {
        v: PROTOCOL_VERSION,
        gateway: "gw-1".into(),
        boot: 7,
        seq: 9,
        ts: 1_700_000_000_000,
        id: "cmd-1".into(),
        state,
        result: full.then(|| {
            Value::map([
                ("model", Value::from("x")),
                ("n", Value::Int(-3)),
                ("f", Value::Float(0.5)),
                ("list", Value::Array(vec![Value::Null, Value::Bool(true), Value::Bytes(vec![1, 2])])),
                ("nested", Value::map([("deep", Value::map([("x", Value::Float(1e300))]))])),
            ])
        }),
        error: full.then(|| "boom".into()),
        artifacts: full.then(|| {
            vec![ArtifactMeta {
                id: "art-1".into(),
                name: "logs.tar.gz".into(),
                size: 123,
                sha256: "ab".repeat(32),
                content_type: "application/gzip".into(),
            }]
        }),
    }
}

fn request(full: bool) -> CommandRequest {
    CommandRequest {
        v: PROTOCOL_VERSION,
        id: "cmd-1".into(),
        command_type: "device.reboot".into(),
        params: if full {
            Value::map([("delay", Value::Int(5)), ("why", "test".into())])
        } else {
            Value::map(Vec::<(String, Value)>::new())
        },
        issued: 1,
        expires: 2,
        timeout_secs: 30,
        confirm: full,
        upload: full.then(|| UploadGrant {
            url: "https://cloud.example/v1/uploads".into(),
            token: "tok".into(),
            artifact: "art-1".into(),
            expires: 3,
            max_bytes: 1 << 30,
        }),
        requested_by: full.then(|| "alice".into()),
        target: full.then(|| "cam-01".into()),
    }
}

#[test]
fn every_message_type_validates() {
    for gap in [false, true] {
        let b = encode(&batch(gap));
        ok("telemetry-batch", &b);
        ok("uplink-message", &b);
    }
    for full in [false, true] {
        ok("inventory", &encode(&inventory(full)));
        ok("command-request", &encode(&request(full)));
        ok("downlink-message", &encode(&request(full)));
        for st in CommandState::ALL {
            ok("command-update", &encode(&update(st, full)));
        }
    }
    for state in [GatewayState::Online, GatewayState::Offline] {
        for version in [None, Some("0.1.0".to_owned())] {
            let s = Status { v: PROTOCOL_VERSION, gateway: "gw-1".into(), state, boot: 1, ts: 2, version };
            ok("status", &encode(&s));
        }
    }
    ok("receipt", &encode(&Receipt::accepted(vec![1, 2, u64::MAX])));
    ok(
        "receipt",
        &encode(&Receipt { v: 1, accepted: vec![], rejected: Some(vec![4]), reason: Some("invalid sensor id".into()) }),
    );
    ok("command-cancel", &encode(&CommandCancel { v: 1, id: "cmd-1".into() }));
}

/// A map with the given integer-keyed entries, each already-encoded value appended raw.
fn map(entries: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    e.map(entries.len() as u64).expect("vec write");
    let mut out = e.into_writer();
    for (k, v) in entries {
        let mut e = Encoder::new(Vec::new());
        e.u64(*k).expect("vec write");
        out.extend(e.into_writer());
        out.extend(v);
    }
    out
}

fn cbor<T: minicbor::Encode<()>>(v: T) -> Vec<u8> {
    minicbor::to_vec(v).expect("vec write")
}

#[test]
fn broken_messages_fail_validation() {
    let status = |v: Vec<u8>, gw: Vec<u8>, state: Vec<u8>| map(&[(0, v), (1, gw), (2, state), (3, cbor(1u8)), (4, cbor(2u8))]);
    ok("status", &status(cbor(1u8), cbor("gw-1"), cbor(1u8)));
    bad("status", &status(cbor(2u8), cbor("gw-1"), cbor(1u8)), "version 2");
    bad("status", &status(cbor(1u8), cbor(5u8), cbor(1u8)), "gateway id is an integer");
    bad("status", &status(cbor(1u8), cbor("gw/1"), cbor(1u8)), "gateway id with a slash");
    bad("status", &status(cbor(1u8), cbor(""), cbor(1u8)), "empty gateway id");
    bad("status", &status(cbor(1u8), cbor("x".repeat(65)), cbor(1u8)), "gateway id of 65 characters");
    bad("status", &status(cbor(1u8), cbor("gw-1"), cbor(2u8)), "state 2 does not exist");
    bad("status", &status(cbor(1u8), cbor("gw-1"), cbor("online")), "state as text");
    bad("status", &map(&[(0, cbor(1u8)), (1, cbor("gw-1")), (2, cbor(1u8)), (3, cbor(1u8))]), "missing ts");

    // Telemetry: take a valid batch apart and break one thing at a time.
    let good = encode(&batch(false));
    ok("telemetry-batch", &good);
    bad("telemetry-batch", &good[..good.len() - 2], "truncated");
    bad("telemetry-batch", b"\xff\x00garbage", "garbage");
    let metric = |m: Vec<u8>| {
        let dev = map(&[(0, cbor("gw-1")), (1, cbor(1u8)), (2, [vec![0x81], m].concat())]);
        map(&[(0, cbor(1u8)), (1, cbor("gw-1")), (2, cbor(7u8)), (3, cbor(1u8)), (4, cbor(1u8)), (5, [vec![0x81], dev].concat())])
    };
    ok("telemetry-batch", &metric(cbor((1u16, 2.5f32))));
    ok("telemetry-batch", &metric(cbor((1u16, -2i64, "eth0"))));
    bad("telemetry-batch", &metric(cbor((1u16, "12"))), "metric value as text");
    bad("telemetry-batch", &metric(cbor((1u16,))), "metric with one element");
    bad("telemetry-batch", &metric(cbor((1u16, 1u8, "x", "y"))), "metric with four elements");
    bad("telemetry-batch", &metric(cbor((1u16, 1u8, 5u8))), "label as integer");
    bad("telemetry-batch", &metric(cbor((70000u32, 1u8))), "metric id above u16");
    bad("telemetry-batch", &metric(cbor(("", 1u8))), "empty metric name");
    // Keys 0-5 of a valid message (v, gateway, boot, seq, ts, empty list); each case changes one entry.
    let valid = || vec![(0, cbor(1u8)), (1, cbor("gw-1")), (2, cbor(7u8)), (3, cbor(1u8)), (4, cbor(1u8)), (5, vec![0x80])];
    let with = |key: u64, value: Vec<u8>| {
        let mut entries = valid();
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
        map(&entries)
    };
    ok("telemetry-batch", &map(&valid()));
    bad("telemetry-batch", &with(3, cbor("1")), "seq as text");
    bad("telemetry-batch", &with(2, cbor(-7i8)), "negative boot");
    bad("telemetry-batch", &with(6, vec![0xf6]), "absent option encoded as null");
    bad("telemetry-batch", &with(42, cbor(1u8)), "unknown key 42");

    // Inventory: sensor type outside the alphabet.
    let sensor = map(&[(0, cbor("cam-1")), (1, cbor("camera"))]);
    bad("inventory", &with(5, [vec![0x81], sensor].concat()), "lower-case sensor type");

    // Command update: upper-case sha256, unknown state.
    let mut u = update(CommandState::Succeeded, true);
    u.artifacts.as_mut().expect("full update has artifacts")[0].sha256 = "AB".repeat(32);
    bad("command-update", &encode(&u), "upper-case sha256");
    let mut e = encode(&update(CommandState::Succeeded, false));
    // key 6 (state) is followed by 0x04 (succeeded); make it 11.
    let pos = e.windows(2).position(|w| w == [0x06, 0x04]).expect("state entry present");
    e[pos + 1] = 0x0b;
    bad("command-update", &e, "state 11");

    // Downlink: params must be a map; a receipt is not a telemetry batch.
    let mut r = request(false);
    r.params = Value::Array(vec![]);
    bad("command-request", &encode(&r), "params as array");
    bad("telemetry-batch", &encode(&Receipt::accepted(vec![1])), "receipt on the telemetry rule");
}

mod envelope {
    //! The COSE_Sign1 envelope of docs/protocol.cddl (`signed-uplink`, `signed-downlink`) against real
    //! signed messages from `scs_protocol::cose`, and broken envelopes against it.
    use scs_protocol::cose::{sign1, SigningKey, KID_CLOUD};

    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate().expect("key generation").0
    }

    #[test]
    fn signed_messages_validate() {
        let k = key();
        let up = sign1(&k, b"gw-1", b"scs/v1/gw-1/up/telemetry", &encode(&batch(true)));
        ok("signed-uplink", &up);
        ok("signed-message", &up);
        let inv = sign1(&k, b"gw-1", b"scs/v1/gw-1/up/inventory", &encode(&inventory(true)));
        ok("signed-uplink", &inv);
        let down = sign1(&k, KID_CLOUD, b"scs/v1/gw-1/down/command", &encode(&request(true)));
        ok("signed-downlink", &down);
        ok("signed-message", &down);
        bad("signed-uplink", &down, "a signed command is not an uplink");
        // The bare message is not an envelope, and the envelope is not a bare message.
        bad("signed-uplink", &encode(&batch(false)), "unsigned telemetry");
        bad("telemetry-batch", &up, "envelope on the telemetry rule");
    }

    #[test]
    fn broken_envelopes_fail_validation() {
        let k = key();
        let payload = encode(&Receipt::accepted(vec![1]));
        let good = sign1(&k, KID_CLOUD, b"scs/v1/gw-1/down/receipt", &payload);
        ok("signed-downlink", &good);
        let build = |tag: u64, protected: &[u8], kid: &[u8], payload: &[u8], sig: &[u8]| {
            let mut e = Encoder::new(Vec::new());
            e.tag(minicbor::data::Tag::new(tag)).expect("vec write");
            e.array(4).expect("vec write").bytes(protected).expect("vec write");
            e.map(1).expect("vec write").u8(4).expect("vec write").bytes(kid).expect("vec write");
            e.bytes(payload).expect("vec write").bytes(sig).expect("vec write");
            e.into_writer()
        };
        let sig = [0u8; 64];
        ok("signed-downlink", &build(18, &[0xa1, 0x01, 0x27], b"cloud", &payload, &sig));
        bad("signed-downlink", &build(17, &[0xa1, 0x01, 0x27], b"cloud", &payload, &sig), "tag 17");
        bad("signed-downlink", &build(18, &[0xa1, 0x01, 0x26], b"cloud", &payload, &sig), "alg ES256");
        bad("signed-downlink", &build(18, &[0xa0], b"cloud", &payload, &sig), "no alg");
        bad("signed-downlink", &build(18, &[0xa1, 0x01, 0x27], b"", &payload, &sig), "empty kid");
        bad("signed-downlink", &build(18, &[0xa1, 0x01, 0x27], b"cloud", &payload, &sig[..63]), "short signature");
        bad("signed-downlink", &build(18, &[0xa1, 0x01, 0x27], b"cloud", b"\xff", &sig), "payload not CBOR");
        bad("signed-downlink", &good[1..], "untagged");
    }
}
