//! What the operators' portal reads and how it is served: `GET /v1/fleet` (one summary row per gateway)
//! and the built portal at `/` (content types, SPA fallback, no way out of the portal directory).

mod support;

use std::io::{Read, Write};
use std::path::Path;

use scs_protocol::topics::topic;
use scs_protocol::{encode, DeviceReport, Metric, TelemetryBatch, TopicKind};
use scs_testkit::{Shim, ShimOpts, TempDir};
use support::{inventory, BOOT};

/// CBOR array of `[topic, payload]` pairs for `POST /v1/ingest`.
fn batch(messages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(messages.len() as u64).unwrap();
    for (t, p) in messages {
        e.array(2).unwrap().str(t).unwrap().bytes(p).unwrap();
    }
    e.into_writer()
}

fn telemetry_with_backlog(gw: &str, seq: u64, depth: i64, gap: Option<(u64, u64, u64)>) -> Vec<u8> {
    let ts = 1_700_000_000_000 + seq * 1000;
    let mut b = TelemetryBatch::new(gw, BOOT, seq, ts);
    b.devices.push(DeviceReport {
        sensor: gw.to_owned(),
        ts,
        metrics: vec![Metric::new("agent.queue_depth", depth), Metric::new("agent.queue_bytes", depth * 100)],
    });
    // The camera's probe: reachable in the first batch, not in the later one.
    b.devices.push(DeviceReport {
        sensor: format!("{gw}-cam-1"),
        ts,
        metrics: vec![Metric::new("device.online", i64::from(gap.is_none())), Metric::new("device.latency_ms", 3i64)],
    });
    b.gap = gap.map(|(dropped, first_seq, last_seq)| scs_protocol::telemetry::Gap { dropped, first_seq, last_seq });
    encode(&b)
}

#[test]
fn fleet_summarises_every_gateway_in_one_request() {
    let shim = Shim::start(ShimOpts::default());
    let api = shim.api();
    let (ta, tb) = (topic("gw-a", TopicKind::Telemetry), topic("gw-b", TopicKind::Telemetry));
    let (ia, ib) = (topic("gw-a", TopicKind::Inventory), topic("gw-b", TopicKind::Inventory));
    // Uplinks are accepted only when signed by their provisioned gateway; the junk is signed too, so it is
    // refused for its content.
    let (gw_a, gw_b) = (shim.add_gateway("gw-a"), shim.add_gateway("gw-b"));
    let body = batch(&[
        (ia.clone(), gw_a.sign(&ia, &inventory("gw-a", 1))),
        (ta.clone(), gw_a.sign(&ta, &telemetry_with_backlog("gw-a", 2, 5, None))),
        (ta.clone(), gw_a.sign(&ta, &telemetry_with_backlog("gw-a", 3, 7, Some((4, 10, 13))))),
        (ta.clone(), gw_a.sign(&ta, b"junk")),
        (ib.clone(), gw_b.sign(&ib, &inventory("gw-b", 1))),
        (tb.clone(), gw_b.sign(&tb, &telemetry_with_backlog("gw-b", 2, 0, None))),
    ]);
    let r = api.post("/v1/ingest", "application/cbor", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].clone();
    let statuses: Vec<&str> = results.as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap_or("?")).collect();
    assert_eq!(statuses, ["stored", "stored", "stored", "rejected", "stored", "stored"], "{results}");

    assert_eq!(api.with_token(None).get("/v1/fleet").status, 401, "the fleet needs the token");
    let fleet = api.get_json("/v1/fleet");
    assert_eq!(fleet["count"], 2, "{fleet}");
    let gws = fleet["gateways"].as_array().unwrap();
    let ids: Vec<&str> = gws.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gw-a", "gw-b"], "gateways only (no children), ordered by id");
    let a = &gws[0];
    assert_eq!(a["name"], "Test gateway");
    assert_eq!(a["backlog"]["queueDepth"], 7, "latest backlog sample: {a}");
    assert_eq!(a["backlog"]["queueBytes"], 700);
    assert_eq!(a["gaps"]["reports"], 1);
    assert_eq!(a["gaps"]["dropped"], 4);
    assert_eq!(a["rejected"], 1, "the junk message: {a}");
    assert_eq!(a["children"]["total"], 1);
    assert_eq!(a["children"]["offline"], 1, "health is the latest device.online sample: {a}");
    assert_eq!(a["children"]["byType"]["CAMERA"], 1);
    assert_eq!(a["openCommands"], 0);
    assert!(a.get("presence").is_some());
    let b = &gws[1];
    assert_eq!(b["children"]["online"], 1, "{b}");
    assert_eq!(b["backlog"]["queueDepth"], 0);
    assert_eq!(b["gaps"]["dropped"], 0);
    assert_eq!(b["rejected"], 0);

    // A queued command (the gateways are offline) counts as open.
    let c = api.post_json("/v1/gateways/gw-b/commands", &serde_json::json!({"type": "device.info"}));
    assert_eq!(c.status, 201, "{}", c.text());
    let fleet = api.get_json("/v1/fleet?q=GW-B");
    assert_eq!(fleet["count"], 1, "search is case-insensitive: {fleet}");
    assert_eq!(fleet["gateways"][0]["openCommands"], 1);
    assert_eq!(api.get_json("/v1/fleet?status=online")["count"], 0);

    // The gateway page's device list carries each child's health.
    let devs = api.get_json("/v1/gateways/gw-a/devices");
    assert_eq!(devs["count"], 1, "{devs}");
    let cam = &devs["devices"][0];
    assert_eq!(cam["id"], "gw-a-cam-1");
    assert_eq!(cam["parentSensorId"], "gw-a");
    assert_eq!(cam["health"]["status"], "offline");
    assert_eq!(cam["health"]["online"], false);
    assert_eq!(cam["health"]["latencyMs"], 3);
    assert_eq!(api.get_json("/v1/gateways/gw-b/devices")["devices"][0]["health"]["status"], "online");
    assert_eq!(api.get_json("/v1/gateways/nope/devices")["count"], 0);
    assert_eq!(api.with_token(None).get("/v1/gateways/gw-a/devices").status, 401);
}

/// Sends a raw request line (no client-side path normalisation) and returns (status, headers+body).
fn raw_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn portal_is_served_at_root_and_cannot_be_left() {
    let dir = TempDir::new("portal");
    let portal = dir.join("dist");
    write(&portal.join("index.html"), "<!doctype html><div id=app>PORTAL-SHELL</div>");
    write(&portal.join("assets/app-1234.js"), "console.log('app')");
    write(&portal.join("assets/app-1234.css"), "body{}");
    write(&dir.join("secret.txt"), "TOP-SECRET");
    std::os::unix::fs::symlink(dir.join("secret.txt"), portal.join("link-out.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), portal.join("dir-out")).unwrap();

    let shim = Shim::start(ShimOpts { args: vec!["--portal-dir".into(), portal.display().to_string()], ..ShimOpts::default() });
    let anon = shim.api().with_token(None);
    let root = anon.get("/");
    assert_eq!(root.status, 200);
    assert!(root.text().contains("PORTAL-SHELL"));
    assert!(root.content_type.as_deref().unwrap().starts_with("text/html"), "{:?}", root.content_type);
    let (_, shell) = raw_get(shim.http_port(), "/");
    assert!(shell.to_lowercase().contains("cache-control: no-cache"));
    assert!(shell.to_lowercase().contains("content-security-policy: default-src 'self'; script-src 'self'"), "{shell}");
    let js = anon.get("/assets/app-1234.js");
    assert_eq!(js.status, 200);
    assert!(js.content_type.as_deref().unwrap().starts_with("text/javascript"));
    let (_, js_raw) = raw_get(shim.http_port(), "/assets/app-1234.js");
    assert!(js_raw.to_lowercase().contains("immutable"), "{js_raw}");
    assert!(js_raw.to_lowercase().contains("x-content-type-options: nosniff"));
    assert!(anon.get("/assets/app-1234.css").content_type.as_deref().unwrap().starts_with("text/css"));
    // Routes of the single-page app get the shell; missing assets and API paths do not.
    let route = anon.get("/gateways/gw-1/commands");
    assert_eq!(route.status, 200);
    assert!(route.text().contains("PORTAL-SHELL"));
    assert_eq!(anon.get("/assets/missing.js").status, 404);
    let api404 = anon.get("/v1/no-such-thing");
    assert_eq!(api404.status, 404);
    assert!(api404.json()["error"].is_string(), "API paths keep JSON errors");
    assert_eq!(anon.get("/v1/sensors").status, 401, "data still needs the token");
    assert_eq!(anon.post("/", "text/plain", b"x").status, 404);

    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/link-out.txt",
        "/dir-out/secret.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
    ] {
        let (status, text) = raw_get(shim.http_port(), path);
        assert!(!text.contains("TOP-SECRET") && !text.contains("root:"), "{path} escaped the portal dir: {text}");
        assert!(status == 404 || status == 400 || (status == 200 && text.contains("PORTAL-SHELL")), "{path}: {status} {text}");
    }
}

#[test]
fn no_portal_dir_serves_nothing_at_root() {
    let shim = Shim::start(ShimOpts { args: vec!["--portal-dir".into(), "none".into()], ..ShimOpts::default() });
    let r = shim.api().with_token(None).get("/");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}
