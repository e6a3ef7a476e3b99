//! The HTTP layer under attack, against the real shim binary on 127.0.0.1: authentication before any body
//! is read (a 200 MB body without credentials never reaches memory), scoped and revocable API tokens, the
//! audit naming the token, upload grants bound to their gateway's own credentials, the paginated sensor
//! list, and JSON on every error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use scs_protocol::topics::topic;
use scs_protocol::{encode, DeviceReport, Metric, TelemetryBatch, TopicKind};
use scs_testkit::{bin_path, Reply, Shim, ShimOpts};
use serde_json::{json, Value};

const BIG: u64 = 200 * 1024 * 1024;

/// `scs-cloud-shim tokens ARGS --data-dir D`: (exit code, stdout, stderr).
fn tokens_cli(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin_path("scs-cloud-shim"))
        .arg("tokens")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run scs-cloud-shim tokens");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new token from `tokens add`, printed alone on stdout.
fn add_token(shim: &Shim, name: &str, scope: &str) -> String {
    let (code, out, err) = tokens_cli(shim.data_dir(), &["add", name, "--scope", scope]);
    assert_eq!(code, 0, "tokens add {name}: {err}");
    let token = out.trim().to_owned();
    assert!(token.starts_with("scs_") && !token.contains(char::is_whitespace), "{out:?}");
    token
}

/// Peak resident set of a process (VmHWM, bytes).
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("VmHWM value") * 1024
}

/// Creates table `gateways` if the gateway-identity migration has not (same columns), and registers
/// `gateway` with MQTT password `password`, as `gateways add` does.
fn register_gateway(shim: &Shim, gateway: &str, password: &str) {
    let conn = rusqlite::Connection::open(shim.db_path()).expect("open db");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS gateways (
            id TEXT PRIMARY KEY, public_key BLOB NOT NULL, mqtt_password_sha256 TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active', created_ms INTEGER NOT NULL, revoked_ms INTEGER)",
    )
    .expect("gateways table");
    let hash: String =
        ring::digest::digest(&ring::digest::SHA256, password.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    conn.execute(
        "INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES (?1, zeroblob(32), ?2, 'active', 0)",
        [gateway, &hash],
    )
    .expect("gateway row");
}

fn basic(gateway: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{gateway}:{password}")))
}

/// What happened to one oversized request.
struct Outcome {
    status: u16,
    body: String,
    /// Body bytes the client had written when the answer arrived.
    sent_at_answer: u64,
}

/// Sends `method path` declaring a `BIG` body with `headers`, streams zeros from another thread and reads
/// the answer on this one. The server is expected to answer before the body is through.
fn send_big(port: u16, method: &str, path: &str, headers: &str) -> Outcome {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: {BIG}\r\n\r\n")
        .expect("headers");
    let sent = Arc::new(AtomicU64::new(0));
    let mut writer = s.try_clone().expect("clone socket");
    let counter = sent.clone();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'0'; 256 * 1024];
        while counter.load(Ordering::SeqCst) < BIG {
            if writer.write_all(&chunk).is_err() {
                return;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let mut sent_at_answer = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Read until the headers and the (small, Content-Length) body are in.
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sent_at_answer.get_or_insert_with(|| sent.load(Ordering::SeqCst));
                head.extend_from_slice(buf.get(..n).unwrap_or_default());
                let text = String::from_utf8_lossy(&head);
                if let Some((h, b)) = text.split_once("\r\n\r\n") {
                    let len = h
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if b.len() >= len {
                        break;
                    }
                }
            }
            // The server may reset the connection it stopped reading; what arrived before counts.
            Err(_) if !head.is_empty() => break,
            Err(e) => panic!("{method} {path}: reading the answer: {e}"),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    feeder.join().expect("feeder");
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Outcome { status, body, sent_at_answer: sent_at_answer.unwrap_or(BIG) }
}

fn assert_json_error(what: &str, r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(r.is_json_error(), "{what}: not a JSON error ({:?}): {}", r.content_type, r.text());
}

/// Attack 7: 200 MB bodies without (valid) credentials are answered at once and never buffered.
#[test]
fn unauthenticated_huge_bodies_are_refused_unread() {
    let shim = Shim::start(ShimOpts::default());
    register_gateway(&shim, "gw-1", "yes");
    let pid = shim.pid().expect("shim pid");
    let port = shim.http_port();
    let before = vm_hwm(pid);
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/v1/uploads/a-00112233445566778899", "", 401),
        ("PATCH", "/v1/uploads/a-00112233445566778899", "Upload-Offset: 0\r\nUpload-Token: v1~u~x~y~1~00\r\n", 401),
        ("POST", "/v1/uploads/a-00112233445566778899", "Authorization: Basic Z3ctMTpubw==\r\n", 401),
        ("POST", "/v1/artifacts/grants", "", 401),
        ("POST", "/v1/artifacts/grants", "Authorization: Bearer wrong\r\n", 401),
        ("POST", "/v1/ingest", "", 401),
        ("POST", "/v1/gateways/gw-1/commands", "", 401),
    ];
    for (method, path, headers, status) in cases {
        let o = send_big(port, method, path, headers);
        assert_eq!(o.status, *status, "{method} {path} {headers:?}: {}", o.body);
        let v: Value = serde_json::from_str(&o.body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", o.body));
        assert!(v["error"].is_string(), "{v}");
        assert!(o.sent_at_answer < BIG, "{method} {path}: answered only after the whole body was sent");
    }
    // Authenticated but oversized: 413 from the declared length, still unread.
    let admin = format!("Authorization: Bearer {}\r\n", shim.token());
    for path in ["/v1/artifacts/grants", "/v1/gateways/gw-1/commands", "/v1/ingest"] {
        let o = send_big(port, "POST", path, &admin);
        assert_eq!(o.status, 413, "{path}: {}", o.body);
        assert!(serde_json::from_str::<Value>(&o.body).is_ok_and(|v| v["error"].is_string()), "{path}: {}", o.body);
    }
    // Four at once, as in the original report (880 MB then).
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let path = if i % 2 == 0 { "/v1/uploads/a-00112233445566778899" } else { "/v1/artifacts/grants" };
            std::thread::spawn(move || send_big(port, "POST", path, "").status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), 401);
    }
    let growth = vm_hwm(pid).saturating_sub(before);
    println!("shim VmHWM grew by {} KiB over {} oversized requests of {} MiB", growth / 1024, cases.len() + 7, BIG >> 20);
    assert!(growth < 32 * 1024 * 1024, "peak RSS grew by {growth} bytes: a refused body was buffered");
    assert_eq!(shim.api().get("/healthz").status, 200);
}

/// Attack 8: the sensor list comes in bounded pages; old clients still get a bare array (the first page).
#[test]
fn sensor_list_is_paginated() {
    let shim = Shim::start(ShimOpts::default());
    {
        let mut conn = rusqlite::Connection::open(shim.db_path()).expect("open db");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        let tx = conn.transaction().expect("tx");
        for i in 0..2500 {
            let gw = if i % 2 == 0 { "gw-a" } else { "gw-b" };
            tx.execute(
                "INSERT INTO sensors (id, type, gateway_id, created_at, updated_at) VALUES (?1, 'CAMERA', ?2, 0, 0)",
                [format!("s-{i:05}"), gw.to_owned()],
            )
            .expect("sensor");
        }
        tx.commit().expect("commit");
    }
    let api = shim.api();
    let first = api.get("/v1/sensors");
    assert_eq!(first.status, 200);
    assert_eq!(first.json().as_array().expect("bare array").len(), 1000, "default page");
    assert_eq!(first.header("x-next-cursor"), Some("s-00999"));
    assert!(
        first.header("link").is_some_and(|l| l.contains("cursor=s-00999") && l.contains("rel=\"next\"")),
        "{:?}",
        first.headers
    );

    let mut seen = Vec::new();
    let mut next = Some("/v1/sensors?limit=700".to_owned());
    while let Some(path) = next.take() {
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let page = r.json();
        let ids: Vec<String> = page.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_owned()).collect();
        assert!(ids.len() <= 700);
        seen.extend(ids);
        next = r.header("x-next-cursor").map(|c| format!("/v1/sensors?limit=700&cursor={c}"));
    }
    let expected: Vec<String> = (0..2500).map(|i| format!("s-{i:05}")).collect();
    assert_eq!(seen, expected, "every sensor exactly once, in id order");

    // Filters carry over into the next link.
    let gw = api.get("/v1/sensors?gatewayId=gw-b&limit=1000");
    assert_eq!(gw.json().as_array().expect("array").len(), 1000);
    let link = gw.header("link").expect("next link").to_owned();
    assert!(link.contains("gatewayId=gw-b"), "{link}");
    let path = link.trim_start_matches('<').split('>').next().expect("uri");
    assert_eq!(api.get(path).json().as_array().expect("array").len(), 250);
    assert!(api.get(path).header("x-next-cursor").is_none(), "last page has no cursor");

    for bad in ["/v1/sensors?limit=1001", "/v1/sensors?limit=0", "/v1/sensors?limit=abc"] {
        assert_json_error(bad, &api.get(bad), 400);
    }
}

/// Scopes: read cannot create commands, operate cannot run destructive ones, admin can; the audit records
/// the token's name whatever X-SCS-User says.
#[test]
fn token_scopes_and_audit_name() {
    let shim = Shim::start(ShimOpts::default());
    let reader = shim.api().with_token(Some(&add_token(&shim, "dashboard", "read")));
    let operator = shim.api().with_token(Some(&add_token(&shim, "ops-bot", "operate")));
    let admin = shim.api().with_token(Some(&add_token(&shim, "root-alice", "admin")));
    let path = "/v1/gateways/gw-s/commands";
    let info = json!({"type": "device.info"});
    let reboot = json!({"type": "device.reboot", "confirm": true});

    assert_eq!(reader.get("/v1/sensors").status, 200);
    let r = reader.post_json(path, &info);
    assert_json_error("read creates", &r, 403);
    assert_eq!(r.json()["requiredScope"], "operate");

    let spoofed = serde_json::to_vec(&info).expect("json");
    let r = operator.request_with("POST", path, &[("X-SCS-User", "mallory")], Some(("application/json", &spoofed)));
    assert_eq!(r.status, 201, "{}", r.text());
    let cmd = r.json();
    assert_eq!(cmd["requestedBy"], "token:ops-bot");
    let id = cmd["id"].as_str().expect("id").to_owned();
    let shown = reader.get_json(&format!("/v1/commands/{id}"));
    assert_eq!(shown["audit"][0]["actor"], "token:ops-bot", "{shown}");

    let r = operator.post_json(path, &reboot);
    assert_json_error("operate reboots", &r, 403);
    assert_eq!(r.json()["requiredScope"], "admin");
    let r = admin.post_json(path, &reboot);
    assert_eq!(r.status, 201, "{}", r.text());
    let reboot_id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(r.json()["requestedBy"], "token:root-alice");

    // Cancelling follows the same rule; reading and cancel attempts by read tokens are refused.
    assert_json_error("read cancels", &reader.post(&format!("/v1/commands/{id}/cancel"), "application/json", b""), 403);
    assert_json_error(
        "operate cancels reboot",
        &operator.post(&format!("/v1/commands/{reboot_id}/cancel"), "application/json", b""),
        403,
    );
    let c = operator.post(&format!("/v1/commands/{id}/cancel"), "application/json", b"");
    assert_eq!(c.status, 200, "{}", c.text());
    let c = admin.post(&format!("/v1/commands/{reboot_id}/cancel"), "application/json", b"");
    assert_eq!(c.status, 200, "{}", c.text());
    let audit = reader.get_json(&format!("/v1/commands/{reboot_id}"))["audit"].clone();
    assert!(
        audit.as_array().expect("audit").iter().any(|a| a["actor"] == "token:root-alice" && a["to"] == "cancelled"),
        "{audit}"
    );

    // SCS_API_TOKEN is the admin token named "env".
    let r = shim.api().post_json(path, &info);
    assert_eq!(r.json()["requestedBy"], "token:env");
    // The bearer scheme is case-insensitive (RFC 7235), on every route.
    let upper = shim.api().with_token(None);
    let auth = format!("BEARER {}", shim.token());
    assert_eq!(upper.request_with("GET", "/v1/sensors", &[("Authorization", &auth)], None).status, 200);
    assert_eq!(upper.request_with("GET", "/v1/artifacts?commandId=x", &[("Authorization", &auth)], None).status, 200);
}

/// `tokens revoke` from another process applies at once; `tokens list` shows no secret.
#[test]
fn revoked_token_is_refused_without_restart() {
    let shim = Shim::start(ShimOpts::default());
    let token = add_token(&shim, "short-lived", "read");
    let api = shim.api().with_token(Some(&token));
    assert_eq!(api.get("/v1/sensors").status, 200, "a token added while serving works at once");
    let (code, _, err) = tokens_cli(shim.data_dir(), &["revoke", "short-lived"]);
    assert_eq!(code, 0, "{err}");
    let r = api.get("/v1/sensors");
    assert_json_error("revoked", &r, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let (code, out, _) = tokens_cli(shim.data_dir(), &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("short-lived"), "{out}");
    assert!(!out.contains(&token) && !out.contains(token.trim_start_matches("scs_")), "list shows the secret: {out}");
    let hash: String =
        ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!out.contains(&hash), "list shows the hash: {out}");
    // A name stays unique; a bad scope is a usage error.
    assert_eq!(tokens_cli(shim.data_dir(), &["add", "short-lived", "--scope", "read"]).0, 1);
    assert_eq!(tokens_cli(shim.data_dir(), &["add", "x", "--scope", "root"]).0, 2);
}

/// A grant read off the wire is useless without its own gateway's credentials.
#[test]
fn stolen_grant_needs_the_gateways_own_credentials() {
    let shim = Shim::start(ShimOpts::default());
    register_gateway(&shim, "gw-up", "right-password");
    register_gateway(&shim, "gw-evil", "evil-password");
    let api = shim.api();
    let cmd = api.post_json("/v1/gateways/gw-up/commands", &json!({"type": "diag.log_bundle"}));
    assert_eq!(cmd.status, 201, "{}", cmd.text());
    let command = cmd.json()["id"].as_str().expect("id").to_owned();
    let g = api.post_json("/v1/artifacts/grants", &json!({"commandId": command}));
    assert_eq!(g.status, 201, "{}", g.text());
    let g = g.json();
    let (artifact, token) = (g["artifact"].as_str().expect("artifact"), g["token"].as_str().expect("token"));
    let upload = format!("/v1/uploads/{artifact}");
    let data = b"log bundle bytes".to_vec();
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &data).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let create = serde_json::to_vec(&json!({"name": "b.tar.gz", "size": data.len(), "sha256": sha})).expect("json");
    let anon = api.with_token(None);
    let evil = basic("gw-evil", "evil-password");
    let wrong = basic("gw-up", "guessed");
    let bearer_grant = format!("Bearer {token}");
    for (what, auth, status) in [
        ("no gateway credentials", None, 401),
        ("grant as bearer only", Some(bearer_grant.as_str()), 401),
        ("wrong password", Some(wrong.as_str()), 401),
        ("another gateway's credentials", Some(evil.as_str()), 403),
    ] {
        let mut h = vec![("Upload-Token", token)];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        assert_json_error(what, &anon.request_with("POST", &upload, &h, Some(("application/json", &create))), status);
        let patch = anon.request_with(
            "PATCH",
            &upload,
            &[h.as_slice(), &[("Upload-Offset", "0")][..]].concat(),
            Some(("application/offset+octet-stream", &data)),
        );
        assert!(matches!(patch.status, 401 | 403), "{what}: PATCH {}", patch.status);
    }
    let own = basic("gw-up", "right-password");
    let h = [("Authorization", own.as_str()), ("Upload-Token", token)];
    let r = anon.request_with("POST", &upload, &h, Some(("application/json", &create)));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = anon.request_with(
        "PATCH",
        &upload,
        &[h.as_slice(), &[("Upload-Offset", "0")][..]].concat(),
        Some(("application/offset+octet-stream", &data)),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = anon.request_with("POST", &format!("{upload}/finalize"), &h, None);
    assert_eq!(r.status, 200, "{}", r.text());

    // Grants exist only for real commands, and never without an end.
    assert_json_error("grant for no command", &api.post_json("/v1/artifacts/grants", &json!({"commandId": "cmd-none"})), 404);
    assert_json_error("ttl 0", &api.post_json("/v1/artifacts/grants", &json!({"commandId": command, "ttlSecs": 0})), 400);
    let reader = api.with_token(Some(&add_token(&shim, "viewer", "read")));
    assert_json_error("read mints", &reader.post_json("/v1/artifacts/grants", &json!({"commandId": command})), 403);
}

/// Every 400/401/403/404/405/413 is JSON, axum's own rejections included; expiry 0 or past is refused.
#[test]
fn errors_are_json_and_expiry_is_validated() {
    let shim = Shim::start(ShimOpts::default());
    let api = shim.api();
    let path = "/v1/gateways/gw-e/commands";
    assert_json_error("bad JSON", &api.post(path, "application/json", b"{not json"), 400);
    assert_json_error("bad query", &api.get("/v1/sensors/x/metrics?from=abc"), 400);
    assert_json_error("bad grant JSON", &api.post("/v1/artifacts/grants", "application/json", b"[1,"), 400);
    assert_json_error("missing commandId", &api.get("/v1/artifacts"), 400);
    assert_json_error("no token", &api.with_token(None).get("/v1/sensors"), 401);
    assert_json_error("no route", &api.get("/v1/nothing"), 404);
    assert_json_error("wrong method", &api.request("DELETE", "/v1/sensors", None), 405);
    let big = vec![b' '; 100 * 1024];
    assert_json_error("body over the limit", &api.post(path, "application/json", &big), 413);
    let reader = api.with_token(Some(&add_token(&shim, "ro", "read")));
    assert_json_error("scope", &reader.post_json(path, &json!({"type": "device.info"})), 403);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    for (body, field) in [
        (json!({"type": "device.info", "expiresInSecs": 0}), "expiresInSecs"),
        (json!({"type": "device.info", "expiresAt": 0}), "expiresAt"),
        (json!({"type": "device.info", "expiresAt": now - 1000}), "expiresAt"),
        (json!({"type": "device.info", "expiresInSecs": 10, "expiresAt": now + 60_000}), "expiresAt"),
    ] {
        let r = api.post_json(path, &body);
        assert_json_error(&body.to_string(), &r, 400);
        assert_eq!(r.json()["field"], field, "{body}");
    }
    let ok = api.post_json(path, &json!({"type": "device.info", "expiresAt": now + 60_000}));
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(ok.json()["expiresAt"], now + 60_000);
    let default = api.post_json(path, &json!({"type": "device.info"})).json();
    let horizon = default["expiresAt"].as_i64().expect("expiresAt") - default["createdAt"].as_i64().expect("createdAt");
    assert_eq!(horizon, 3600 * 1000, "absent expiry is the default, not never");
}

/// +/-Infinity and NaN never reach the store: the message is rejected, clearly and counted.
#[test]
fn non_finite_metric_values_are_refused() {
    let shim = Shim::start(ShimOpts::default());
    let api = shim.api();
    let t = topic("gw-inf", TopicKind::Telemetry);
    let mut messages = Vec::new();
    for (seq, v) in [(1u64, f64::INFINITY), (2, f64::NEG_INFINITY), (3, f64::NAN), (4, 21.5)] {
        let mut b = TelemetryBatch::new("gw-inf", 7, seq, 1_700_000_000_000 + seq);
        b.devices.push(DeviceReport {
            sensor: "gw-inf".into(),
            ts: 1_700_000_000_000 + seq,
            metrics: vec![Metric::new("temp.c", v)],
        });
        messages.push((t.clone(), encode(&b)));
    }
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(messages.len() as u64).expect("cbor");
    for (topic, payload) in &messages {
        e.array(2).expect("cbor").str(topic).expect("cbor").bytes(payload).expect("cbor");
    }
    let r = api.post("/v1/ingest", "application/cbor", &e.into_writer());
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].clone();
    for i in 0..3 {
        assert_eq!(results[i]["status"], "rejected", "{results}");
        assert!(results[i]["error"].as_str().is_some_and(|e| e.contains("finite")), "{results}");
    }
    assert_eq!(results[3]["status"], "stored", "{results}");
    let m = api.get_json("/v1/sensors/gw-inf/metrics");
    assert_eq!(m["count"], 1, "{m}");
    assert_eq!(m["samples"][0]["value"], 21.5, "{m}");
    let stats = api.get_json("/v1/gateways/gw-inf/stats");
    assert_eq!(stats["rejected"], 3, "{stats}");
}
