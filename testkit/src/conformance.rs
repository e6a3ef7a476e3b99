//! One HTTP conformance suite for both clouds: the same checks run against a shim
//! (`cloud-shim/tests/conformance.rs`) and against the Worker (`worker/tests/conformance.rs`). Each check
//! takes the server's [`Api`] (admin token) and a gateway id that exists there with no agent connected,
//! so commands stay `queued`.

use serde_json::{json, Value};

use crate::Api;

fn commands_path(gw: &str) -> String {
    format!("/v1/gateways/{gw}/commands")
}

/// Create, read back, list, cancel while queued, cancel again (409), unknown id (404).
pub fn commands_lifecycle(api: &Api, gw: &str) {
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "expiresInSecs": 600}));
    assert_eq!(r.status, 201, "create: {}", r.text());
    let c = r.json();
    let id = c["id"].as_str().expect("id").to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/commands/{id}").as_str()));
    for (k, want) in
        [("state", json!("queued")), ("type", json!("device.info")), ("gatewayId", json!(gw)), ("terminal", json!(false))]
    {
        assert_eq!(c[k], want, "{k} in {c}");
    }
    assert_eq!(c["artifacts"], json!([]));
    assert_eq!(c["requestedBy"], "token:env");
    assert_eq!(c["expiresAt"].as_i64().unwrap() - c["createdAt"].as_i64().unwrap(), 600_000);
    let got = api.get_json(&format!("/v1/commands/{id}"));
    assert_eq!(got["id"], id.as_str());
    let audit = got["audit"].as_array().expect("audit");
    assert_eq!(audit.len(), 1, "{got}");
    assert_eq!(
        (audit[0]["actor"].as_str(), audit[0]["from"].is_null(), audit[0]["to"].as_str()),
        (Some("token:env"), true, Some("queued"))
    );
    let list = api.get_json(&commands_path(gw));
    assert_eq!(list["gatewayId"], gw);
    assert!(list["commands"].as_array().unwrap().iter().any(|x| x["id"] == id.as_str()), "{list}");
    let r = api.post_json(&format!("/v1/commands/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "cancel: {}", r.text());
    assert_eq!(r.json()["state"], "cancelled");
    let r = api.post_json(&format!("/v1/commands/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 409, "second cancel: {}", r.text());
    assert!(r.is_json_error());
    let got = api.get_json(&format!("/v1/commands/{id}"));
    let tos: Vec<&str> = got["audit"].as_array().unwrap().iter().filter_map(|a| a["to"].as_str()).collect();
    assert_eq!(tos, ["queued", "cancelled"]);
    assert_eq!(api.get("/v1/commands/cmd-does-not-exist").status, 404);
    assert_eq!(api.post_json("/v1/commands/cmd-does-not-exist/cancel", &json!({})).status, 404);
}

fn refused(api: &Api, gw: &str, body: Value, field: &str, rule: &str) {
    let r = api.post_json(&commands_path(gw), &body);
    assert_eq!(r.status, 400, "{body} -> {} {}", r.status, r.text());
    let e = r.json();
    assert!(e["error"].is_string(), "{e}");
    assert_eq!((e["field"].as_str(), e["rule"].as_str()), (Some(field), Some(rule)), "{body} -> {e}");
}

/// Validation refusals name the field and the rule; no token is 401, a read token 403.
pub fn commands_refusals(api: &Api, gw: &str) {
    refused(api, gw, json!({"type": "no.such.command"}), "type", "unknown");
    refused(api, gw, json!({}), "type", "required");
    refused(api, gw, json!({"type": "device.info", "expiresInSecs": 0}), "expiresInSecs", "min");
    refused(api, gw, json!({"type": "device.info", "expiresInSecs": 5, "expiresAt": 1}), "expiresAt", "exclusive");
    refused(api, gw, json!({"type": "net.tcp_probe", "params": {"host": "10.0.0.5", "port": 70000}}), "params.port", "max");
    refused(api, gw, json!({"type": "device.reboot"}), "confirm", "requiresConfirmation");
    let r = api.post(&commands_path(gw), "application/json", b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    let anon = api.with_token(None);
    assert_eq!(anon.post_json(&commands_path(gw), &json!({"type": "device.info"})).status, 401);
    assert_eq!(anon.get("/v1/commands/x").status, 401);
}

/// A target that is not a child of the gateway, or whose class the command does not accept, is 400
/// naming `target`. `camera` must be a CAMERA child of `gw` on the server.
pub fn commands_target_refusals(api: &Api, gw: &str, camera: &str) {
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "target": "not-a-child"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "target");
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "target": gw}));
    assert_eq!(r.status, 400, "the gateway is not its own child: {}", r.text());
    assert_eq!(r.json()["field"], "target");
    // device.info acts on the gateway only: a camera child is the wrong class.
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "target": camera}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "target");
}

// ---- The read API, seeded through real ingest ----

use scs_protocol::http_ingest::encode_batch;
use scs_protocol::topics::topic;
use scs_protocol::{
    encode, AgentInfo, DeviceEvent, DeviceReport, EventKind, Inventory, Metric, SensorInfo, TelemetryBatch, TopicKind,
    PROTOCOL_VERSION,
};

use crate::GatewayCreds;

/// Boot id of the uplinks the read checks post.
const BOOT: u64 = 0x5eed_0000_0000_0001;
/// Sample and event times of the read checks (fixed, so both clouds answer the same numbers).
const T0: u64 = 1_760_000_000_000;

/// Posts signed uplinks of `gw` to `POST /v1/ingest` as a forwarding shim does; the per-message statuses.
pub fn ingest(api: &Api, gw: &GatewayCreds, messages: &[(TopicKind, Vec<u8>)]) -> Vec<String> {
    let signed: Vec<(String, Vec<u8>)> = messages
        .iter()
        .map(|(kind, payload)| {
            let t = topic(&gw.id, *kind);
            let s = gw.sign(&t, payload);
            (t, s)
        })
        .collect();
    let body = encode_batch(signed.iter().map(|(t, p)| (t.as_str(), p.as_slice())));
    let r = api.post("/v1/ingest", "application/cbor", &body);
    assert_eq!(r.status, 200, "ingest: {}", r.text());
    let v = r.json();
    v["results"].as_array().expect("results").iter().map(|x| x["status"].as_str().unwrap_or("?").to_owned()).collect()
}

fn sensor(id: &str, ty: &str, parent: Option<&str>, name: Option<&str>) -> SensorInfo {
    SensorInfo { id: id.into(), sensor_type: ty.into(), parent: parent.map(Into::into), name: name.map(Into::into), attrs: None }
}

fn inventory(gw: &str, seq: u64, children: Vec<SensorInfo>) -> Vec<u8> {
    let mut sensors = vec![sensor(gw, "EDGE_CONTROLLER", None, Some("Site gateway"))];
    sensors.extend(children);
    encode(&Inventory {
        v: PROTOCOL_VERSION,
        gateway: gw.into(),
        boot: BOOT,
        seq,
        ts: T0,
        sensors,
        agent: Some(AgentInfo { version: "9.9.9".into(), arch: "armv7".into(), os: None, hostname: None }),
    })
}

/// The ids of the children the read checks announce for `gw`.
pub fn read_children(gw: &str) -> (String, String) {
    (format!("{gw}-cam"), format!("{gw}-nvr"))
}

/// The samples and events the read checks send: the camera is up with a broken login and one lost
/// stream profile; the NVR is down with a failed disk and a clock 45 s off; the gateway's queue holds 3.
fn telemetry(gw: &str, seq: u64) -> Vec<u8> {
    let (cam, nvr) = read_children(gw);
    let mut b = TelemetryBatch::new(gw, BOOT, seq, T0);
    b.devices = vec![
        DeviceReport {
            sensor: gw.into(),
            ts: T0,
            metrics: vec![Metric::new("agent.queue_depth", 3i64), Metric::new("agent.queue_bytes", 300i64)],
        },
        DeviceReport {
            sensor: cam.clone(),
            ts: T0 + 10,
            metrics: vec![
                Metric::new("device.online", 1i64),
                Metric::new("device.auth_ok", 0i64),
                Metric::labelled("camera.stream_ok", "main", 1i64),
                Metric::labelled("camera.stream_ok", "sub", 0i64),
                Metric::new("device.latency_ms", 12i64),
            ],
        },
        DeviceReport {
            sensor: nvr.clone(),
            ts: T0 + 20,
            metrics: vec![
                Metric::new("device.online", 0i64),
                Metric::labelled("nvr.hdd_ok", "1", 0i64),
                Metric::new("device.clock_offset_s", 45i64),
                Metric::new("device.latency_ms", 2.5),
            ],
        },
    ];
    let mut replaced = DeviceEvent::new(&cam, T0 + 1, EventKind::REPLACED);
    replaced.detail = Some("serial DS-1 -> DS-2".into());
    replaced.attrs = Some([("old".to_owned(), "DS-1".to_owned()), ("new".to_owned(), "DS-2".to_owned())].into());
    let mut hdd = DeviceEvent::new(&nvr, T0 + 2, EventKind::HDD_FAILED);
    hdd.attrs = Some([("hdd".to_owned(), "1".to_owned())].into());
    b.events = Some(vec![replaced, hdd, DeviceEvent::new(&cam, T0 + 3, EventKind::STREAM_LOST)]);
    encode(&b)
}

/// Seeds `gw` (provisioned on the server, no other sensors) through ingest: an inventory with a camera
/// and an NVR, then a telemetry batch with their health samples and three device events.
pub fn seed_read(api: &Api, gw: &GatewayCreds) {
    let (cam, nvr) = read_children(&gw.id);
    let inv =
        inventory(&gw.id, 1, vec![sensor(&cam, "CAMERA", Some(&gw.id), Some("Lobby")), sensor(&nvr, "NVR", Some(&gw.id), None)]);
    let tel = telemetry(&gw.id, 2);
    assert_eq!(ingest(api, gw, &[(TopicKind::Inventory, inv), (TopicKind::Telemetry, tel.clone())]), ["stored", "stored"]);
    // A replay stores nothing twice, events included.
    assert_eq!(ingest(api, gw, &[(TopicKind::Telemetry, tel)]), ["duplicate"]);
}

/// `GET /v1/fleet` after [`seed_read`]: the gateway's summary with its children counted by health.
pub fn fleet(api: &Api, gw: &str) {
    let v = api.get_json(&format!("/v1/fleet?q={}", gw.to_uppercase()));
    assert_eq!(v["count"], 1, "{v}");
    assert!(v["online"].is_number(), "{v}");
    let g = &v["gateways"][0];
    assert_eq!((g["id"].as_str(), g["name"].as_str(), g["status"].as_str()), (Some(gw), Some("Site gateway"), Some("unknown")));
    assert_eq!(g["attrs"]["agentVersion"], "9.9.9");
    assert_eq!(g["backlog"], json!({"queueDepth": 3, "queueBytes": 300, "ts": T0}));
    assert_eq!(g["gaps"], json!({"reports": 0, "dropped": 0, "lastAt": null}));
    assert_eq!((g["rejected"].as_i64(), g["openCommands"].as_i64()), (Some(0), Some(0)));
    assert!(g.get("presence").is_some_and(Value::is_null), "no gateway connected: {g}");
    assert_eq!(
        g["children"],
        json!({
            "total": 2, "online": 1, "offline": 1, "unknown": 0,
            "byType": {"CAMERA": 1, "NVR": 1},
            "problems": {"auth_broken": 1, "stream_lost": 1, "down": 1, "hdd_failed": 1, "clock_drift": 1},
        })
    );
    assert_eq!(api.get_json(&format!("/v1/fleet?q={gw}&status=online"))["count"], 0);
    assert_eq!(api.get_json(&format!("/v1/fleet?q={gw}&status=unknown"))["count"], 1);
}

/// `GET /v1/gateways/{id}/devices` after [`seed_read`]: the device tree with each child's health.
pub fn gateway_devices(api: &Api, gw: &str) {
    let (cam, nvr) = read_children(gw);
    let v = api.get_json(&format!("/v1/gateways/{gw}/devices"));
    assert_eq!((v["gatewayId"].as_str(), v["count"].as_i64()), (Some(gw), Some(2)), "{v}");
    let d = &v["devices"];
    assert_eq!(
        (d[0]["id"].as_str(), d[0]["type"].as_str(), d[0]["name"].as_str()),
        (Some(cam.as_str()), Some("CAMERA"), Some("Lobby"))
    );
    assert_eq!(d[0]["parentSensorId"], gw);
    assert_eq!(
        d[0]["health"],
        json!({"status": "online", "online": true, "latencyMs": 12, "ts": T0 + 10, "authOk": false, "streamOk": false,
               "hddOk": null, "clockOffsetS": null, "problems": ["auth_broken", "stream_lost"]})
    );
    assert_eq!(d[1]["id"], nvr.as_str());
    assert_eq!(
        d[1]["health"],
        json!({"status": "offline", "online": false, "latencyMs": 2.5, "ts": T0 + 20, "authOk": null, "streamOk": null,
               "hddOk": false, "clockOffsetS": 45.0, "problems": ["down", "hdd_failed", "clock_drift"]})
    );
    assert_eq!(api.get_json("/v1/gateways/gw-never-seen/devices")["count"], 0);
}

/// `GET /v1/sensors?parentSensorId=` after [`seed_read`]: the children with their `DeviceHealth`.
pub fn sensors_of_parent(api: &Api, gw: &str) {
    let (cam, nvr) = read_children(gw);
    let rows = api.get_json(&format!("/v1/sensors?parentSensorId={gw}"));
    let rows = rows.as_array().expect("a bare array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0]["id"].as_str(), rows[1]["id"].as_str()), (Some(cam.as_str()), Some(nvr.as_str())));
    assert_eq!(
        rows[0]["health"],
        json!({"online": true, "authOk": false, "streamOk": false, "hddOk": null, "clockOffsetS": null, "ts": T0 + 10,
               "problems": ["auth_broken", "stream_lost"]})
    );
    assert_eq!(rows[1]["health"]["problems"], json!(["down", "hdd_failed", "clock_drift"]));
    let page = api.get(&format!("/v1/sensors?parentSensorId={gw}&limit=1"));
    assert_eq!(page.header("x-next-cursor"), Some(cam.as_str()));
    assert_eq!(page.json()[0]["health"]["online"], true);
}

/// Both events routes after [`seed_read`]: newest first, `since` and `limit`, 400 and 404.
pub fn device_events(api: &Api, gw: &str) {
    let (cam, nvr) = read_children(gw);
    let v = api.get_json(&format!("/v1/gateways/{gw}/events"));
    assert_eq!((v["gatewayId"].as_str(), v["count"].as_i64(), v["limit"].as_i64()), (Some(gw), Some(3), Some(100)), "{v}");
    assert!(v["since"].is_null());
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["stream.lost", "nvr.hdd_failed", "device.replaced"]);
    let e = &v["events"][2];
    assert_eq!(
        (e["sensorId"].as_str(), e["gatewayId"].as_str(), e["ts"].as_u64(), e["detail"].as_str()),
        (Some(cam.as_str()), Some(gw), Some(T0 + 1), Some("serial DS-1 -> DS-2"))
    );
    assert_eq!(e["attrs"], json!({"old": "DS-1", "new": "DS-2"}));
    assert!(e["receivedAt"].as_i64().is_some_and(|t| t > 0), "{e}");
    assert!(v["events"][0]["detail"].is_null());
    assert_eq!(v["events"][0]["attrs"], json!({}));
    let v = api.get_json(&format!("/v1/sensors/{cam}/events"));
    assert_eq!((v["sensorId"].as_str(), v["count"].as_i64()), (Some(cam.as_str()), Some(2)), "{v}");
    let v = api.get_json(&format!("/v1/sensors/{cam}/events?since={}&limit=5", T0 + 2));
    assert_eq!((v["count"].as_i64(), v["since"].as_u64(), v["limit"].as_i64()), (Some(1), Some(T0 + 2), Some(5)));
    let v = api.get_json(&format!("/v1/gateways/{gw}/events?limit=1"));
    assert_eq!((v["count"].as_i64(), v["events"][0]["kind"].as_str()), (Some(1), Some("stream.lost")));
    assert_eq!(api.get_json(&format!("/v1/sensors/{nvr}/events"))["events"][0]["attrs"], json!({"hdd": "1"}));
    assert_eq!(api.get_json(&format!("/v1/sensors/{gw}/events"))["count"], 0, "a known sensor without events");
    let r = api.get(&format!("/v1/sensors/{cam}/events?limit=0"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.is_json_error());
    let r = api.get(&format!("/v1/gateways/{gw}/events?limit=1001"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(api.get("/v1/sensors/no-such-sensor/events").status, 404);
    assert_eq!(api.get("/v1/gateways/no-such-gateway/events").status, 404);
}

/// The sensor list follows ingest: read twice, then an inventory adds a sensor and renames one, and the
/// next read shows both. Returns the `X-Cache` header of the three reads (the Worker serves repeats
/// from KV and says so; the shim has no such cache).
pub fn sensor_list_follows_ingest(api: &Api, gw: &GatewayCreds) -> Vec<Option<String>> {
    let path = format!("/v1/sensors?gatewayId={}", gw.id);
    let ids =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).map(str::to_owned).collect() };
    let (cam, nvr) = read_children(&gw.id);
    let first = api.get(&path);
    assert_eq!(ids(&first.json()), [gw.id.clone(), cam.clone(), nvr.clone()]);
    // Repeat until a read comes from a cache, where the server has one and says so: a cache may have
    // moved on once more after the seed (a Queue consumer's own invalidation lands after ingest answers).
    let mut second = api.get(&path);
    for _ in 0..10 {
        if second.header("x-cache").is_none_or(|c| c == "hit") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        second = api.get(&path);
    }
    assert_eq!(second.json(), first.json());
    let added = format!("{}-cam2", gw.id);
    let inv = inventory(
        &gw.id,
        3,
        vec![
            sensor(&cam, "CAMERA", Some(&gw.id), Some("Lobby east")),
            sensor(&nvr, "NVR", Some(&gw.id), None),
            sensor(&added, "CAMERA", Some(&gw.id), None),
        ],
    );
    assert_eq!(ingest(api, gw, &[(TopicKind::Inventory, inv)]), ["stored"]);
    let third = api.get(&path);
    let v = third.json();
    assert_eq!(ids(&v), [gw.id.clone(), cam.clone(), added, nvr]);
    assert_eq!(v[1]["name"], "Lobby east", "{v}");
    [first, second, third].iter().map(|r| r.header("x-cache").map(str::to_owned)).collect()
}
