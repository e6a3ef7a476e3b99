//! Camera/NVR monitoring end to end: the real agent binary probes a Dahua NVR fake (CGI over HTTP
//! with Digest, checked for real) on 127.0.0.1 and reports through the real shim. The NVR's disk and
//! channel metrics, its identity in the sensor's attrs, its health in the gateway's device list, and a
//! `device.replaced` event after its serial changes all come back through the HTTP API; a sensor
//! without events, an unknown one and a bad limit are answered as documented.

use std::time::Duration;

use scs_testkit::fakes::dahua::{DahuaOpts, FakeDahua};
use scs_testkit::{wait_for, Agent, Shim, ShimOpts};
use serde_json::Value;

const T: Duration = Duration::from_secs(40);

fn latest(api: &scs_testkit::Api, sensor: &str, name: &str, label: &str) -> Option<f64> {
    let r = api.get(&format!("/v1/sensors/{sensor}/metrics?name={name}&order=desc&limit=50"));
    // 404 until the first report of the sensor is stored.
    let v = if r.status == 404 { return None } else { r.json() };
    v["samples"].as_array()?.iter().find(|s| s["label"].as_str() == Some(label)).and_then(|s| s["value"].as_f64())
}

#[test]
fn nvr_metrics_identity_health_and_a_replaced_event_through_agent_and_shim() {
    let nvr = FakeDahua::start(DahuaOpts::default());
    let shim = Shim::start(ShimOpts::default());
    let gw = "gw-nvr";
    let mut opts = shim.agent_opts(gw);
    opts.config_toml = Some(format!(
        "gateway_id = \"{gw}\"\n[collect]\nprobe_management_secs = 1\n\n[[devices]]\nid = \"nvr-lobby\"\ntype = \"NVR\"\n\
         name = \"Lobby NVR\"\naddress = \"{}\"\ndriver = \"dahua\"\nusername = \"admin\"\npassword = \"dahua-pass\"\n",
        nvr.target()
    ));
    let agent = Agent::start(opts);
    let api = shim.api();

    // Disk and channel metrics of the NVR.
    let cap = wait_for(T, "disk capacity", || latest(&api, "nvr-lobby", "nvr.hdd_capacity_bytes", "/dev/sda"));
    assert_eq!(cap, 3_814_697.0 * 1_048_576.0, "4 TB as MiB-rounded bytes");
    assert_eq!(latest(&api, "nvr-lobby", "nvr.hdd_ok", "/dev/sda"), Some(1.0));
    let free = wait_for(T, "free space", || latest(&api, "nvr-lobby", "nvr.hdd_free_bytes", "/dev/sdb"));
    assert_eq!(free, 1_907_349.0 * 1_048_576.0);
    let online = |ch: &str| wait_for(T, "channel state", || latest(&api, "nvr-lobby", "nvr.channel_online", ch));
    assert_eq!((online("1"), online("2"), online("3")), (1.0, 0.0, 1.0));
    assert_eq!(wait_for(T, "recording", || latest(&api, "nvr-lobby", "nvr.recording", "3")), 0.0);

    // Identity in the sensor's attrs.
    let sensor = wait_for(T, "identity attrs", || {
        let v = api.get_json("/v1/sensors/nvr-lobby");
        (v["attrs"]["serialNumber"] == "6J0ABCD123456").then_some(v)
    });
    assert_eq!(sensor["attrs"]["manufacturer"], "Dahua");
    assert_eq!(sensor["attrs"]["model"], "DHI-NVR4208-8P-4KS2");
    assert_eq!(sensor["attrs"]["firmwareVersion"], "4.001.0000000.3,build:2023-05-10");
    assert_eq!(sensor["parentSensorId"], gw);

    // Health in the gateway's device list.
    let list = api.get_json(&format!("/v1/sensors?parentSensorId={gw}"));
    let row = list.as_array().unwrap().iter().find(|s| s["id"] == "nvr-lobby").unwrap().clone();
    assert_eq!(row["health"]["online"], true, "{row}");
    assert_eq!(row["health"]["hddOk"], true, "{row}");
    assert_eq!(row["health"]["authOk"], true, "{row}");
    assert_eq!(row["health"]["problems"], serde_json::json!([]), "{row}");
    assert!(api.get_json("/v1/sensors").as_array().unwrap().iter().all(|s| s.get("health").is_none()));
    assert_eq!(api.get_json("/v1/sensors/nvr-lobby/events")["count"], 0, "first sight is no event");

    // Another unit answers at the address, and one of its disks fails.
    let before = wait_for(T, "a stored sample time", || {
        api.get_json("/v1/sensors/nvr-lobby/metrics?order=desc&limit=1")["samples"][0]["ts"].as_i64()
    });
    nvr.set(|o| {
        o.serial = "6J0NEW0000001".into();
        if let Some(d) = o.hdds.get_mut(1) {
            d.state = "Error".into();
        }
    });
    let events = wait_for(T, "replaced and hdd_failed events", || {
        let v = api.get_json("/v1/sensors/nvr-lobby/events");
        let kinds: Vec<&str> = v["events"].as_array()?.iter().filter_map(|e| e["kind"].as_str()).collect();
        (kinds.contains(&"device.replaced") && kinds.contains(&"nvr.hdd_failed")).then_some(v)
    });
    let replaced = events["events"].as_array().unwrap().iter().find(|e| e["kind"] == "device.replaced").unwrap();
    assert_eq!(replaced["attrs"]["old"], "6J0ABCD123456");
    assert_eq!(replaced["attrs"]["new"], "6J0NEW0000001");
    assert_eq!(replaced["detail"], "serial 6J0ABCD123456 -> 6J0NEW0000001");
    assert_eq!(replaced["gatewayId"], gw);
    assert!(replaced["ts"].as_i64().unwrap() >= before - 5_000);
    let hdd = events["events"].as_array().unwrap().iter().find(|e| e["kind"] == "nvr.hdd_failed").unwrap();
    assert_eq!(hdd["attrs"]["hdd"], "/dev/sdb");
    assert_eq!(hdd["attrs"]["status"], "error");
    // Newest first, and the gateway's view lists the same events.
    let ts: Vec<i64> = events["events"].as_array().unwrap().iter().map(|e| e["ts"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "{ts:?}");
    let by_gw = api.get_json(&format!("/v1/gateways/{gw}/events"));
    assert!(by_gw["events"].as_array().unwrap().iter().any(|e| e["kind"] == "device.replaced" && e["sensorId"] == "nvr-lobby"));
    let since = replaced["ts"].as_i64().unwrap() + 1;
    let later = api.get_json(&format!("/v1/sensors/nvr-lobby/events?since={since}"));
    assert!(later["events"].as_array().unwrap().iter().all(|e| e["kind"] != "device.replaced"), "{later}");
    assert_eq!(api.get_json("/v1/sensors/nvr-lobby/events?limit=1")["events"].as_array().unwrap().len(), 1);

    // The inventory follows the new unit; the list shows the failed disk.
    wait_for(T, "new serial in attrs", || {
        (api.get_json("/v1/sensors/nvr-lobby")["attrs"]["serialNumber"] == "6J0NEW0000001").then_some(())
    });
    let row: Value = wait_for(T, "hdd_failed health", || {
        let list = api.get_json(&format!("/v1/sensors?parentSensorId={gw}"));
        let row = list.as_array()?.iter().find(|s| s["id"] == "nvr-lobby")?.clone();
        (row["health"]["hddOk"] == false).then_some(row)
    });
    assert_eq!(row["health"]["problems"], serde_json::json!(["hdd_failed"]), "{row}");
    // The portal's views agree: the gateway's device tree and the fleet row count the failed disk.
    let devices = api.get_json(&format!("/v1/gateways/{gw}/devices"));
    let dev = devices["devices"].as_array().unwrap().iter().find(|s| s["id"] == "nvr-lobby").unwrap().clone();
    assert_eq!(dev["health"]["problems"], serde_json::json!(["hdd_failed"]), "{dev}");
    assert_eq!(dev["health"]["status"], "online", "{dev}");
    let fleet = api.get_json("/v1/fleet");
    let fleet_row = fleet["gateways"].as_array().unwrap().iter().find(|g| g["id"] == gw).unwrap().clone();
    assert_eq!(fleet_row["children"]["problems"], serde_json::json!({ "hdd_failed": 1 }), "{fleet_row}");

    // Errors as documented.
    assert_eq!(api.get("/v1/sensors/no-such/events").status, 404);
    assert_eq!(api.get("/v1/gateways/no-such/events").status, 404);
    let bad = api.get("/v1/sensors/nvr-lobby/events?limit=0");
    assert_eq!(bad.status, 400);
    assert!(bad.is_json_error());
    assert_eq!(api.with_token(None).get("/v1/sensors/nvr-lobby/events").status, 401);
    assert_eq!(nvr.stats.auth_failures.load(std::sync::atomic::Ordering::SeqCst), 0, "no bad login reached the NVR");
    drop(agent);
}
