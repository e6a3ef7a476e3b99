//! Artifacts end to end with the real binaries: the `diag.log_bundle` command goes through the API, the
//! command session and MQTT to a real agent, which bundles its logs, spools and uploads them; the test then
//! downloads the artifact through the tokenized URL from `GET /v1/commands/{id}` and compares the bytes.
//! Also: download tokens survive a shim restart (the signing key is persisted), forged/other tokens are 403.

use std::io::Read;
use std::time::Duration;

use scs_testkit::{wait_for, Agent, Shim, ShimOpts};
use serde_json::{json, Value};

fn client() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into()
}

fn get_bytes(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = client().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let mut resp = req.call().expect("GET");
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(u64::MAX).read_to_vec().expect("body");
    (status, body)
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Names of the entries in a ustar archive.
fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut pos = 0;
    while pos + 512 <= tar.len() && tar[pos] != 0 {
        let h = &tar[pos..pos + 512];
        names.push(String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string());
        let size = usize::from_str_radix(std::str::from_utf8(&h[124..135]).expect("size field"), 8).expect("octal size");
        pos += 512 + size.div_ceil(512) * 512;
    }
    names
}

fn absolute(shim: &Shim, url: &str) -> String {
    if url.starts_with("http") {
        url.to_string()
    } else {
        shim.url(url)
    }
}

#[test]
fn log_bundle_command_end_to_end_with_download() {
    let mut shim = Shim::start(ShimOpts::default());
    let gw = "gw-bundle-1";
    let _agent = Agent::start(shim.agent_opts(gw));
    let api = shim.api();
    // The gateway is online once its sensor shows up; then the command is delivered at once.
    wait_for(Duration::from_secs(30), "gateway sensor", || api.get_json("/v1/sensors").to_string().contains(gw).then_some(()));
    let created = api.post_json(
        &format!("/v1/gateways/{gw}/commands"),
        &json!({ "type": "diag.log_bundle", "params": { "sinceSecs": 3600 } }),
    );
    assert!(created.is_success(), "create: {} {}", created.status, created.text());
    let id = created.json()["id"].as_str().expect("command id").to_string();
    let cmd: Value = wait_for(Duration::from_secs(60), "log bundle command to finish", || {
        let c = api.get_json(&format!("/v1/commands/{id}"));
        let state = c["state"].as_str().unwrap_or("").to_string();
        match state.as_str() {
            "succeeded" => Some(c),
            "failed" | "timed_out" | "rejected" | "expired" | "cancelled" | "interrupted" => panic!("command ended {state}: {c}"),
            _ => None,
        }
    });
    println!("log bundle command: {cmd}");
    let arts = cmd["artifacts"].as_array().unwrap_or_else(|| panic!("no artifacts list: {cmd}"));
    assert_eq!(arts.len(), 1, "{cmd}");
    let a = &arts[0];
    let (name, size, sha) =
        (a["name"].as_str().expect("name"), a["size"].as_u64().expect("size"), a["sha256"].as_str().expect("sha256"));
    assert!(name.contains("log-bundle") && name.ends_with(".tar.gz"), "{name}");
    let url = absolute(&shim, a["url"].as_str().unwrap_or_else(|| panic!("no url: {a}")));

    let (status, bytes) = get_bytes(&url, None);
    assert_eq!(status, 200);
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256_hex(&bytes), sha, "downloaded bytes differ from the recorded sha256");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut tar).expect("gunzip the bundle");
    let names = tar_names(&tar);
    for want in ["config.toml", "queue.txt", "system/version", "system/df", "logs/agent.log", "manifest.txt"] {
        assert!(names.iter().any(|n| n.ends_with(want)), "{want} missing from the bundle: {names:?}");
    }
    // The redacted config is in it, and no secret.
    assert!(!String::from_utf8_lossy(&tar).contains("test-token"));

    let (status, part) = get_bytes(&url, Some("bytes=10-19"));
    assert_eq!((status, part.as_slice()), (206, &bytes[10..20]));
    let (status, _) = get_bytes(&url, Some(&format!("bytes={size}-")));
    assert_eq!(status, 416);

    // Tampered signature and another artifact's id: 403.
    let (base, token) = url.split_once("?token=").expect("token in url");
    let mut forged = token.to_string();
    let last = forged.pop().expect("non-empty token");
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(get_bytes(&format!("{base}?token={forged}"), None).0, 403);
    let other = base.rsplit_once('/').map(|(p, _)| format!("{p}/a-00000000000000000000?token={token}")).expect("path");
    assert_eq!(get_bytes(&other, None).0, 403);

    // The signing key is persisted: the same link still works after a shim restart.
    shim.restart();
    let (status, again) = get_bytes(&url, None);
    assert_eq!(status, 200);
    assert!(again == bytes);
}
