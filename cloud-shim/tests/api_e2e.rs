//! The HTTP API of the real binary: bearer-token auth, the HTTP ingest contract, errors as JSON.

mod support;

use scs_protocol::topics::topic;
use scs_protocol::TopicKind;
use scs_testkit::{Shim, ShimOpts};
use support::telemetry;

/// CBOR array of `[topic, payload]` pairs.
fn batch(messages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(messages.len() as u64).unwrap();
    for (t, p) in messages {
        e.array(2).unwrap().str(t).unwrap().bytes(p).unwrap();
    }
    e.into_writer()
}

/// Sends only the headers of a POST declaring `len` body bytes and returns the status the shim answers
/// with. (Sending a whole oversized body races the server, which answers and closes early.)
fn status_for_declared_length(shim: &Shim, len: usize) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", shim.http_port())).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    write!(
        s,
        "POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/cbor\r\nContent-Length: {len}\r\n\r\n",
        shim.token()
    )
    .expect("write headers");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("read status line");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {line:?}"))
}

#[test]
fn token_is_required_except_for_health() {
    let shim = Shim::start(ShimOpts::default());
    let anon = shim.api().with_token(None);
    for path in ["/v1/sensors", "/v1/sensors/x", "/v1/sensors/x/metrics", "/v1/gateways/x/stats"] {
        let r = anon.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.json()["error"].as_str().unwrap().contains("token"), "{path}: {}", r.text());
    }
    assert_eq!(shim.api().with_token(Some("wrong")).get("/v1/sensors").status, 401);
    assert_eq!(anon.post("/v1/ingest", "application/cbor", &batch(&[])).status, 401);
    let h = anon.get("/healthz");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    assert_eq!(shim.api().get("/v1/sensors").status, 200);
    let missing = shim.api().get("/v1/sensors/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
}

#[test]
fn http_ingest_contract() {
    let shim = Shim::start(ShimOpts::default());
    let api = shim.api();
    let t = topic("gw-http", TopicKind::Telemetry);
    // The HTTP contract carries the gateway's signed messages (a token does not replace the signature).
    let gw = shim.add_gateway("gw-http");
    let body = batch(&[
        (t.clone(), gw.sign(&t, &telemetry("gw-http", 1, 2))),
        (t.clone(), gw.sign(&t, &telemetry("gw-http", 1, 2))),
        (t.clone(), gw.sign(&t, b"junk")),
        ("not/a/topic".to_owned(), vec![]),
    ]);
    let r = api.post("/v1/ingest", "application/cbor", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let statuses: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["stored", "duplicate", "rejected", "rejected"], "{v}");
    assert_eq!(v["results"][0]["seq"], 1);
    assert_eq!(v["results"][0]["topic"], t.as_str());
    assert!(v["results"][2]["error"].as_str().unwrap().starts_with("malformed"), "{v}");
    // Same again: everything stored is now a duplicate.
    let again = api.post("/v1/ingest", "application/cbor", &body).json();
    assert_eq!(again["results"][0]["status"], "duplicate");
    assert_eq!(api.get_json("/v1/sensors/gw-http/metrics")["count"], 2);

    let bad = api.post("/v1/ingest", "application/cbor", b"\x01\x02garbage");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].is_string());
    assert_eq!(status_for_declared_length(&shim, 9 * 1024 * 1024), 413, "over 8 MiB is refused");
    let wrong_type = api.post("/v1/ingest", "application/json", b"[]");
    assert_eq!(wrong_type.status, 415);
}
