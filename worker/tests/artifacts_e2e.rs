//! Artifacts on the Worker end to end with real processes: workerd (`scripts/worker-dev`) with its local
//! R2 bucket and D1, Mosquitto, a shim bridging them with `--worker-url`, a real provisioned agent and
//! `scs-agent upload-file`. A `diag.log_bundle` created at the Worker reaches the agent, whose upload
//! lands in R2 through the Worker; the tokenized URL from `GET /v1/commands/{id}` downloads the same
//! bytes, with Range. An 11 MiB file goes up as three R2 multipart parts, the second cut off mid-body
//! and resumed at its part boundary; forged, expired and other-gateway grants, a wrong part size, an
//! oversize declaration and a wrong SHA-256 are refused.

mod common;
mod support;

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use scs_testkit::{bin_path, Reply, TempDir};
use scs_worker::auth::sha256_hex;
use serde_json::{json, Value as Json};
use support::Site;

const MIB: u64 = 1 << 20;
const PART: u64 = 5 * MIB;

/// The artifact signing key every Worker of this test process gets (scripts/worker-dev puts it in
/// .dev.vars); set before the first Worker starts.
fn signing_key() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        // SAFETY: set once, before any Worker is spawned, to the same value for every test.
        unsafe { std::env::set_var("SCS_SIGNING_KEY", "artifact-key-of-the-r2-tests-0123456789") };
    });
}

fn start(gw: &str) -> Option<Site> {
    common::require_tools()?;
    signing_key();
    Some(Site::start(gw, 1))
}

/// GET of an absolute URL without an API token (downloads authenticate by their URL).
fn get(url: &str, range: Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
    let r = scs_testkit::Api::new("http://127.0.0.1", None).request_with("GET", url, &headers, None);
    (r.status, r.headers, r.body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Deterministic bytes that compress badly.
fn data(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The gateway's upload credentials and a grant, as the agent uses them.
struct Uploading {
    api: scs_testkit::Api,
    basic: String,
    token: String,
    artifact: String,
    expires: u64,
    command: String,
}

impl Uploading {
    fn new(site: &Site, command: &str, ttl: Option<u64>) -> Uploading {
        let mut body = json!({ "commandId": command });
        if let Some(t) = ttl {
            body["ttlSecs"] = json!(t);
        }
        let r = site.worker.api().post_json("/v1/artifacts/grants", &body);
        assert_eq!(r.status, 201, "grant: {}", r.text());
        let g = r.json();
        assert_eq!(g["url"], format!("{}/v1/uploads", site.worker.url()));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", site.creds.id, site.creds.password))
        );
        Uploading {
            api: scs_testkit::Api::new(&site.worker.url(), None),
            basic,
            token: g["token"].as_str().unwrap().to_owned(),
            artifact: g["artifact"].as_str().unwrap().to_owned(),
            expires: g["expires"].as_u64().unwrap(),
            command: command.to_owned(),
        }
    }

    fn path(&self, suffix: &str) -> String {
        format!("/v1/uploads/{}{suffix}", self.artifact)
    }

    fn send(&self, method: &str, suffix: &str, extra: &[(&str, &str)], body: Option<(&str, &[u8])>) -> Reply {
        let mut h: Vec<(&str, &str)> = vec![("Authorization", &self.basic), ("Upload-Token", &self.token)];
        h.extend_from_slice(extra);
        self.api.request_with(method, &self.path(suffix), &h, body)
    }

    fn create(&self, size: u64, sha256: &str) -> Reply {
        let body = json!({ "name": "big.bin", "size": size, "sha256": sha256, "contentType": "application/octet-stream" });
        self.send("POST", "", &[], Some(("application/json", body.to_string().as_bytes())))
    }

    fn patch(&self, offset: u64, bytes: &[u8]) -> Reply {
        let o = offset.to_string();
        self.send("PATCH", "", &[("Upload-Offset", &o)], Some(("application/offset+octet-stream", bytes)))
    }

    fn head(&self) -> Reply {
        self.send("HEAD", "", &[], None)
    }

    /// A PATCH whose body stops after `sent` of the declared `len` bytes: the connection is closed.
    fn cut_patch(&self, port: u16, offset: u64, len: u64, sent: &[u8]) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "PATCH {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {}\r\nUpload-Token: {}\r\nUpload-Offset: {offset}\r\n\
             Content-Type: application/offset+octet-stream\r\nContent-Length: {len}\r\n\r\n",
            self.path(""),
            self.basic,
            self.token
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(sent).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
    }
}

fn offset(r: &Reply) -> Option<u64> {
    r.header("upload-offset").and_then(|v| v.parse().ok())
}

#[test]
fn a_log_bundle_from_the_agent_lands_in_r2_and_downloads_with_range() {
    let Some(mut site) = start("gw-r2a") else { return };
    site.start_agent();
    let id = site.create(json!({ "type": "diag.log_bundle", "params": { "sinceSecs": 3600 } }));
    let done = site.wait_state(&id, "succeeded");
    let arts = done["artifacts"].as_array().unwrap_or_else(|| panic!("no artifacts: {done}"));
    assert_eq!(arts.len(), 1, "{done}");
    let a = &arts[0];
    let (name, size, sha) = (a["name"].as_str().unwrap(), a["size"].as_u64().unwrap(), a["sha256"].as_str().unwrap());
    assert!(name.contains("log-bundle") && name.ends_with(".tar.gz"), "{name}");
    let url = a["url"].as_str().unwrap_or_else(|| panic!("no download URL: {a}"));
    assert!(url.starts_with(&format!("{}/v1/artifacts/", site.worker.url())), "{url}");

    let (status, headers, bytes) = get(url, None);
    assert_eq!(status, 200);
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256_hex(&bytes), sha, "the downloaded bytes are not what the agent uploaded");
    assert_eq!(header(&headers, "etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(header(&headers, "content-disposition"), Some(format!("attachment; filename=\"{name}\"").as_str()));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));

    let (status, headers, part) = get(url, Some("bytes=10-19"));
    assert_eq!((status, part.as_slice()), (206, &bytes[10..20]));
    assert_eq!(header(&headers, "content-range"), Some(format!("bytes 10-19/{size}").as_str()));
    let (status, _, tail) = get(url, Some("bytes=-5"));
    assert_eq!((status, tail.as_slice()), (206, &bytes[bytes.len() - 5..]));
    let (status, headers, _) = get(url, Some(&format!("bytes={size}-")));
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "content-range"), Some(format!("bytes */{size}").as_str()));

    // The listing names it with a URL of its own; forged and other-artifact tokens are 403.
    let list = site.worker.api().get_json(&format!("/v1/artifacts?commandId={id}"));
    assert_eq!(list["artifacts"][0]["sha256"], sha, "{list}");
    let (base, token) = url.split_once("?token=").unwrap();
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(get(&format!("{base}?token={forged}"), None).0, 403);
    let other = base.rsplit_once('/').map(|(p, _)| format!("{p}/a-00000000000000000000?token={token}")).unwrap();
    assert_eq!(get(&other, None).0, 403);
    assert_eq!(get(base, None).0, 403, "no token");
}

#[test]
fn an_11_mib_upload_is_three_r2_parts_and_resumes_after_a_cut_part() {
    let Some(site) = start("gw-r2b") else { return };
    // A command of this gateway (held: its agent is not running) to hang the grant on.
    let command = site.create(json!({ "type": "device.info" }));
    let up = Uploading::new(&site, &command, None);
    let bytes = data(11 * MIB + 12_345, 7);
    let size = bytes.len() as u64;
    let sha = sha256_hex(&bytes);

    // Refused before any body is read: no gateway credentials, a forged grant, an oversize declaration.
    let anon = up.api.request_with("HEAD", &up.path(""), &[("Upload-Token", &up.token)], None);
    assert_eq!(anon.status, 401);
    let forged = Uploading { token: up.token.replace("~u~", "~d~"), ..Uploading::new(&site, &command, None) };
    assert_eq!(forged.create(size, &sha).status, 403);
    let r = up.create(1 << 40, &sha);
    assert_eq!(r.status, 413, "{}", r.text());

    let r = up.create(size, &sha);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("upload-part-size"), Some(PART.to_string().as_str()));
    assert_eq!(up.create(size, &sha).status, 200, "create is idempotent");

    // Not one whole part: 400 naming the part size, nothing committed.
    let r = up.patch(0, &bytes[..4 * MIB as usize]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["partSize"], PART);
    assert_eq!(offset(&up.head()), Some(0));

    let r = up.patch(0, &bytes[..PART as usize]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(offset(&r), Some(PART));
    // Part 2 is cut off after 1 MiB: nothing of it counts, the upload resumes at its start.
    up.cut_patch(site.worker.port, PART, PART, &bytes[PART as usize..(PART + MIB) as usize]);
    std::thread::sleep(Duration::from_millis(500));
    let h = up.head();
    assert_eq!((h.status, offset(&h)), (200, Some(PART)), "{}", site.logs());
    assert_eq!(h.header("upload-length"), Some(size.to_string().as_str()));
    let r = up.patch(2 * PART, &bytes[(2 * PART) as usize..]);
    assert_eq!((r.status, offset(&r)), (409, Some(PART)), "a part past the committed offset: {}", r.text());

    // The agent's uploader (default chunk 4 MiB) takes the Worker's part size and finishes the rest.
    let dir = TempDir::new("r2-upload");
    site.creds.install(&dir.join("agent"));
    let file = dir.join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let report = upload_file(&site, &up, &dir.join("agent"), &file);
    println!("upload-file through the Worker (resumed after a cut part): {report}");
    assert_eq!(report["resumedFrom"], PART, "{report}");
    assert_eq!(report["bytesSent"], size - PART, "{report}");
    assert_eq!(report["sha256"], sha.as_str());
    assert!(
        site.logs().contains(&format!("artifact {}: finalized", up.artifact)) && site.logs().contains("3 parts)"),
        "{}",
        site.logs()
    );

    // Downloaded through the command's tokenized URL: the same bytes, and a range across a part boundary.
    let cmd = site.worker.api().get_json(&format!("/v1/commands/{command}"));
    let url = cmd["artifacts"][0]["url"].as_str().unwrap_or_else(|| panic!("no artifact URL: {cmd}")).to_owned();
    let (status, _, got) = get(&url, None);
    assert_eq!(status, 200);
    assert!(got == bytes, "downloaded {} bytes differ from the uploaded {size}", got.len());
    let (from, to) = (PART - 10, PART + 9);
    let (status, _, slice) = get(&url, Some(&format!("bytes={from}-{to}")));
    assert_eq!((status, slice.as_slice()), (206, &bytes[from as usize..=to as usize]));
    // Finished: HEAD says complete, a further PATCH is refused with the full offset.
    let h = up.head();
    assert_eq!((offset(&h), h.header("upload-complete")), (Some(size), Some("1")));
    assert_eq!(up.patch(0, &bytes[..10]).status, 409);
}

#[test]
fn expired_grants_and_wrong_checksums_are_refused() {
    let Some(site) = start("gw-r2c") else { return };
    let command = site.create(json!({ "type": "device.info" }));

    let short = Uploading::new(&site, &command, Some(1));
    std::thread::sleep(Duration::from_millis(1500));
    let r = short.create(10, &"0".repeat(64));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());

    // Declared SHA-256 of other bytes: finalize refuses (422) and discards the upload.
    let up = Uploading::new(&site, &command, None);
    let bytes = data(1000, 3);
    let r = up.create(1000, &sha256_hex(b"something else"));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(up.patch(0, &bytes).status, 204);
    let r = up.send("POST", "/finalize", &[], None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["actual"], sha256_hex(&bytes));
    assert_eq!(up.head().status, 404, "the rejected upload is gone");
    let listed = site.worker.api().get_json(&format!("/v1/artifacts?commandId={command}"));
    assert!(listed["artifacts"].as_array().unwrap().is_empty(), "{listed}");
}

/// `scs-agent upload-file` with the grant of `up`; its JSON report.
fn upload_file(site: &Site, up: &Uploading, data_dir: &Path, file: &Path) -> Json {
    let out = Command::new(bin_path("scs-agent"))
        .arg("upload-file")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--url", &format!("{}/v1/uploads", site.worker.url()), "--token", &up.token, "--artifact", &up.artifact])
        .args(["--command", &up.command, "--expires", &up.expires.to_string(), "--name", "big.bin"])
        .arg("--file")
        .arg(file)
        .env("RUST_LOG", "info")
        .output()
        .expect("run scs-agent upload-file");
    assert!(out.status.success(), "upload-file failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), site.logs());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}
