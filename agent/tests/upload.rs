//! Agent uploads against the real shim over real HTTP(S) on 127.0.0.1, through `scs-agent upload-file`
//! (the same spool + uploader the log bundle command uses):
//! a 100 MB upload whose connection is cut mid-way resumes and re-sends little; an agent killed mid-upload
//! resumes from the server's committed offset after restart; the spool cap refuses an oversized artifact;
//! two gateways upload at once; HTTPS with a CA generated here.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scs_testkit::{bin_path, generate_tls, wait_until, Shim, ShimOpts, TempDir, TestTls};
use serde_json::Value;

const MB: u64 = 1_000_000;
const CHUNK: u64 = 4 << 20;

/// A file of `size` pseudo-random bytes (incompressible, cheap to make).
fn make_file(dir: &Path, name: &str, size: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create file"));
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            b.copy_from_slice(&bytes[..b.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write file");
        left -= n as u64;
    }
    f.flush().expect("flush");
    path
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct Grant {
    url: String,
    token: String,
    artifact: String,
    expires: u64,
    command: String,
}

fn grant(shim: &Shim, command: &str) -> Grant {
    let r = shim.api().post_json("/v1/artifacts/grants", &serde_json::json!({ "commandId": command }));
    assert_eq!(r.status, 201, "grant: {}", r.text());
    let v = r.json();
    Grant {
        url: v["url"].as_str().expect("url").to_string(),
        token: v["token"].as_str().expect("token").to_string(),
        artifact: v["artifact"].as_str().expect("artifact").to_string(),
        expires: v["expires"].as_u64().expect("expires"),
        command: command.to_string(),
    }
}

/// `scs-agent upload-file` arguments for `file` with `grant`, uploading to `url` (the proxy, or the shim).
fn upload_args(data_dir: &Path, g: &Grant, url: &str, file: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "upload-file",
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--url",
        url,
        "--token",
        &g.token,
        "--artifact",
        &g.artifact,
        "--command",
        &g.command,
        "--expires",
        &g.expires.to_string(),
        "--file",
        &file.to_string_lossy(),
        "--content-type",
        "application/octet-stream",
        "--chunk-bytes",
        &CHUNK.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn_upload(args: &[String]) -> Child {
    Command::new(bin_path("scs-agent"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scs-agent upload-file")
}

/// Waits (bounded) for the child and returns its output.
fn finish(mut child: Child, timeout: Duration) -> Output {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!("upload-file did not finish within {timeout:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "upload-file failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Downloads a command's artifact through its tokenized URL and returns the SHA-256 of the bytes.
fn download_sha(shim: &Shim, command: &str) -> (String, u64) {
    let list = shim.api().get_json(&format!("/v1/artifacts?commandId={command}"));
    let url = list["artifacts"][0]["url"].as_str().unwrap_or_else(|| panic!("no artifact url in {list}")).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.get(&url).call().expect("download");
    assert_eq!(resp.status(), 200);
    let mut reader = resp.body_mut().as_reader();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("read body");
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(&buf[..n]);
    }
    (ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect(), total)
}

/// A loopback TCP proxy in front of the shim. Once `n` client→server bytes went through in total (over
/// all connections), the connection carrying byte `n` is cut (both directions closed) or stalled until
/// `release` is set, then closed; this happens once, later traffic passes untouched.
struct Proxy {
    port: u16,
    forwarded: Arc<AtomicU64>,
    release: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
}

#[derive(Clone, Copy)]
enum Fault {
    Cut(u64),
    Stall(u64),
}

impl Proxy {
    fn start(upstream_port: u16, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let forwarded = Arc::new(AtomicU64::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let (f, r, s) = (forwarded.clone(), release.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                let (f, r, s, fired) = (f.clone(), r.clone(), s.clone(), fired.clone());
                std::thread::spawn(move || pump(client, server, fault, &f, &fired, &r, &s));
            }
        });
        Proxy { port, forwarded, release, stalled }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/uploads", self.port)
    }
}

fn pump(
    mut client: TcpStream,
    mut server: TcpStream,
    fault: Fault,
    forwarded: &AtomicU64,
    fired: &AtomicBool,
    release: &AtomicBool,
    stalled: &AtomicBool,
) {
    // Server → client in its own thread.
    let (mut c2, mut s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut s2, &mut c2);
        let _ = c2.shutdown(Shutdown::Write);
    });
    let limit = match fault {
        Fault::Cut(n) | Fault::Stall(n) => n,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Connections are sequential here (the uploader sends one request at a time), so the shared
        // total decides which connection meets the fault.
        let room = if fired.load(Ordering::SeqCst) { u64::MAX } else { limit.saturating_sub(forwarded.load(Ordering::SeqCst)) };
        if room == 0 {
            fired.store(true, Ordering::SeqCst);
            break;
        }
        let want = room.min(buf.len() as u64) as usize;
        let n = match client.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if server.write_all(&buf[..n]).is_err() {
            return;
        }
        forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
    // The fault point: stall (until released), then drop both sides as a broken network would.
    if let Fault::Stall(_) = fault {
        stalled.store(true, Ordering::SeqCst);
        while !release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

#[test]
fn hundred_mb_upload_survives_a_cut_connection_and_resends_little() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-cut");
    let size = 100 * MB;
    let file = make_file(tmp.path(), "big.bin", size, 7);
    let g = grant(&shim, "cmd-cut");
    let proxy = Proxy::start(shim.http_port(), Fault::Cut(37 * MB + 12_345));
    let args = upload_args(&tmp.join("agent"), &g, &proxy.url(), &file, &["--spool-max-bytes", &(200 * MB).to_string()]);
    let out = finish(spawn_upload(&args), Duration::from_secs(120));
    let r = report(&out);
    let resent = r["resent"].as_u64().expect("resent");
    println!(
        "cut at 37 MB: bytesSent={} resent={resent} retries={} proxy forwarded={} ({} MB/s)",
        r["bytesSent"],
        r["retries"],
        proxy.forwarded.load(Ordering::Relaxed),
        r["mbPerSec"]
    );
    assert!(r["retries"].as_u64().expect("retries") >= 1, "the cut must have been noticed: {r}");
    assert!(resent <= CHUNK, "re-sent {resent} bytes, more than one {CHUNK}-byte chunk");
    assert_eq!(r["size"].as_u64(), Some(size));
    let want = sha256_file(&file);
    assert_eq!(r["sha256"].as_str(), Some(want.as_str()));
    assert_eq!(download_sha(&shim, "cmd-cut"), (want, size), "downloaded bytes differ");
    // The spool file and the progress row are gone after success.
    let spool = tmp.join("agent").join("spool");
    assert_eq!(std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0), 0, "spool not emptied");
}

#[test]
fn agent_killed_mid_upload_resumes_from_the_committed_offset() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-restart");
    let size = 30 * MB;
    let file = make_file(tmp.path(), "mid.bin", size, 11);
    let g = grant(&shim, "cmd-restart");
    let stall_at = 13 * MB;
    let proxy = Proxy::start(shim.http_port(), Fault::Stall(stall_at));
    let data_dir = tmp.join("agent");
    let args = upload_args(&data_dir, &g, &proxy.url(), &file, &[]);
    let mut first = spawn_upload(&args);
    assert!(wait_until(Duration::from_secs(60), || proxy.stalled.load(Ordering::SeqCst)), "upload never reached the stall point");
    first.kill().expect("kill -9 the agent");
    let _ = first.wait();
    proxy.release.store(true, Ordering::SeqCst);
    // The restarted agent (same data dir, same artifact) finds its progress row and spool file.
    let out = finish(spawn_upload(&args), Duration::from_secs(60));
    let r = report(&out);
    let resumed = r["resumedFrom"].as_u64().expect("resumedFrom");
    println!("killed after {stall_at} proxied bytes; restarted run resumed from {resumed}, sent {}", r["bytesSent"]);
    assert!(resumed > stall_at - CHUNK - 4096 && resumed <= stall_at, "resumed from {resumed}, expected close to {stall_at}");
    assert_eq!(r["bytesSent"].as_u64(), Some(size - resumed), "the restarted run re-sent committed bytes");
    assert_eq!(download_sha(&shim, "cmd-restart"), (sha256_file(&file), size));
}

#[test]
fn full_spool_refuses_the_artifact() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-spool");
    let file = make_file(tmp.path(), "two-mb.bin", 2 << 20, 3);
    let g = grant(&shim, "cmd-spool");
    let data_dir = tmp.join("agent");
    let url = format!("{}/v1/uploads", shim.http_url());
    let out = finish(
        spawn_upload(&upload_args(&data_dir, &g, &url, &file, &["--spool-max-bytes", &(1u64 << 20).to_string()])),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("spool full"), "no clear error: {stderr}");
    let left: Vec<_> = std::fs::read_dir(data_dir.join("spool")).expect("spool dir").collect();
    assert!(left.is_empty(), "partial spool file left behind: {left:?}");
    // The same file fits a larger spool.
    let out = finish(
        spawn_upload(&upload_args(&data_dir, &g, &url, &file, &["--spool-max-bytes", &(4u64 << 20).to_string()])),
        Duration::from_secs(30),
    );
    report(&out);
}

#[test]
fn two_gateways_upload_at_once() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-two");
    let url = format!("{}/v1/uploads", shim.http_url());
    let jobs: Vec<(Grant, PathBuf, PathBuf)> = ["gw-a", "gw-b"]
        .iter()
        .enumerate()
        .map(|(i, gw)| {
            let file = make_file(tmp.path(), &format!("{gw}.bin"), 20 * MB + i as u64, 100 + i as u64);
            (grant(&shim, &format!("cmd-{gw}")), file, tmp.join(gw))
        })
        .collect();
    let children: Vec<Child> =
        jobs.iter().map(|(g, file, dir)| spawn_upload(&upload_args(dir, g, &url, file, &["--chunk-bytes", "1048576"]))).collect();
    for (child, (g, file, _)) in children.into_iter().zip(&jobs) {
        let r = report(&finish(child, Duration::from_secs(60)));
        assert_eq!(r["artifact"].as_str(), Some(g.artifact.as_str()));
        let size = std::fs::metadata(file).expect("meta").len();
        assert_eq!(download_sha(&shim, &g.command), (sha256_file(file), size));
    }
}

#[test]
fn https_upload_with_a_ca_generated_here() {
    let tmp = TempDir::new("upload-https");
    let TestTls { ca, cert, key, ca_der } = generate_tls(tmp.path(), &["localhost"]);

    let port = scs_testkit::free_port();
    let public = format!("https://localhost:{port}");
    let mut args: Vec<String> =
        vec!["--tls-cert".into(), cert.to_string_lossy().into(), "--tls-key".into(), key.to_string_lossy().into()];
    args.extend(["--public-url".to_string(), public.clone()]);
    // The testkit's readiness probe speaks plain HTTP, so start the process by hand and wait for TLS.
    let data = tmp.join("shim");
    std::fs::create_dir_all(&data).expect("data dir");
    let mqtt = scs_testkit::free_port();
    let mut shim = Command::new(bin_path("scs-cloud-shim"))
        .args([
            "serve",
            "--data-dir",
            &data.to_string_lossy(),
            "--http",
            &format!("127.0.0.1:{port}"),
            "--mqtt-listen",
            &format!("127.0.0.1:{mqtt}"),
        ])
        .args(&args)
        .env("SCS_API_TOKEN", "tls-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shim");
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ureq::tls::Certificate::from_der(&ca_der).to_owned()]))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let client: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into();
    let ready = wait_until(Duration::from_secs(30), || {
        client.get(&format!("{public}/healthz")).call().map(|r| r.status() == 200).unwrap_or(false)
    });
    if !ready {
        let _ = shim.kill();
        panic!("HTTPS shim not ready");
    }
    let mut resp = client
        .post(&format!("{public}/v1/artifacts/grants"))
        .header("Authorization", "Bearer tls-token")
        .content_type("application/json")
        .send(r#"{"commandId":"cmd-tls"}"#)
        .expect("grant over https");
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json");
    let g = Grant {
        url: v["url"].as_str().expect("url").into(),
        token: v["token"].as_str().expect("token").into(),
        artifact: v["artifact"].as_str().expect("artifact").into(),
        expires: v["expires"].as_u64().expect("expires"),
        command: "cmd-tls".into(),
    };
    assert!(g.url.starts_with("https://localhost:"), "grant URL honours --public-url: {}", g.url);
    let file = make_file(tmp.path(), "tls.bin", 5 * MB, 5);

    // Without the CA the handshake fails and the upload reports it.
    let empty_ca = tmp.join("other-ca.pem");
    let other = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("p")
        .self_signed(&rcgen::KeyPair::generate().expect("k"))
        .expect("c");
    std::fs::write(&empty_ca, other.pem()).expect("other ca");
    let no_ca = finish(
        spawn_upload(&upload_args(&tmp.join("agent-noca"), &g, &g.url, &file, &["--ca-file", &empty_ca.to_string_lossy()])),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&no_ca.stderr);
    assert_eq!(no_ca.status.code(), Some(1), "an untrusted server certificate must fail the upload: {stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
    let out = finish(
        spawn_upload(&upload_args(&tmp.join("agent"), &g, &g.url, &file, &["--ca-file", &ca.to_string_lossy()])),
        Duration::from_secs(60),
    );
    let r = report(&out);
    assert_eq!(r["sha256"].as_str(), Some(sha256_file(&file).as_str()));
    let _ = shim.kill();
    let _ = shim.wait();
}

#[test]
fn expired_or_forged_upload_tokens_are_refused_by_the_shim() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-expired");
    let file = make_file(tmp.path(), "small.bin", 100_000, 9);
    let r = shim.api().post_json("/v1/artifacts/grants", &serde_json::json!({ "commandId": "cmd-exp", "ttlSecs": 1 }));
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let mut g = Grant {
        url: v["url"].as_str().expect("url").into(),
        token: v["token"].as_str().expect("token").into(),
        artifact: v["artifact"].as_str().expect("artifact").into(),
        // Claim a later expiry locally so the request reaches the shim, which must refuse it.
        expires: u64::MAX / 2,
        command: "cmd-exp".into(),
    };
    std::thread::sleep(Duration::from_millis(1200));
    let url = format!("{}/v1/uploads", shim.http_url());
    let out = finish(spawn_upload(&upload_args(&tmp.join("a"), &g, &url, &file, &[])), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403") && stderr.contains("expired"), "{stderr}");
    // A token whose signature does not match (last hex digit flipped) is refused the same way.
    let fresh = grant(&shim, "cmd-forged");
    let last = fresh.token.chars().last().expect("token");
    g = Grant { token: format!("{}{}", &fresh.token[..fresh.token.len() - 1], if last == '0' { '1' } else { '0' }), ..fresh };
    let out = finish(spawn_upload(&upload_args(&tmp.join("b"), &g, &url, &file, &[])), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403") && stderr.contains("signature"), "{stderr}");
}

/// `scs-agent run` finishes an upload a crashed process left behind (progress row + spool file), in the
/// background, from the server's committed offset.
#[test]
fn agent_start_resumes_an_unfinished_upload() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-daemon");
    let size = 12 * MB;
    let file = make_file(tmp.path(), "left.bin", size, 21);
    let g = grant(&shim, "cmd-daemon");
    let proxy = Proxy::start(shim.http_port(), Fault::Stall(5 * MB));
    let data_dir = tmp.join("agent");
    let mut first = spawn_upload(&upload_args(&data_dir, &g, &proxy.url(), &file, &[]));
    assert!(wait_until(Duration::from_secs(60), || proxy.stalled.load(Ordering::SeqCst)), "upload never reached the stall point");
    first.kill().expect("kill -9 the uploader");
    let _ = first.wait();
    proxy.release.store(true, Ordering::SeqCst);
    let mut opts = scs_testkit::AgentOpts::new("gw-resume", &shim.mqtt_url());
    opts.data_dir = Some(data_dir.clone());
    let agent = scs_testkit::Agent::start(opts);
    let done = wait_until(Duration::from_secs(30), || {
        let list = shim.api().get_json("/v1/artifacts?commandId=cmd-daemon");
        list["artifacts"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert!(done, "the agent did not finish the upload after starting");
    assert_eq!(download_sha(&shim, "cmd-daemon"), (sha256_file(&file), size));
    // It continued from the committed offset (about 5 MB), not from zero.
    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&g.artifact) && l.contains("resumed from"))
        .unwrap_or_else(|| panic!("no upload line in:\n{logs}"));
    let from: u64 = line
        .split("resumed from ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("offset");
    println!("agent start resumed the upload from {from}");
    assert!(from > 4 * MB, "{line}");
    assert!(wait_until(Duration::from_secs(5), || std::fs::read_dir(data_dir.join("spool"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)));
}

/// An artifact finalized by someone else with other bytes (the grant was read off the wire): the agent's
/// own upload of another size must fail at once with a clear error, not PATCH in a loop until the deadline.
#[test]
fn an_upload_finalized_with_another_size_fails_fast_with_a_clear_error() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("upload-conflict");
    let g = grant(&shim, "cmd-conflict");
    let url = format!("{}/v1/uploads", shim.http_url());
    let theirs = make_file(tmp.path(), "theirs.bin", 300_000, 3);
    let out = finish(spawn_upload(&upload_args(&tmp.join("first"), &g, &url, &theirs, &[])), Duration::from_secs(60));
    report(&out);
    for (name, size) in [("larger.bin", 500_000), ("smaller.bin", 100_000)] {
        let ours = make_file(tmp.path(), name, size, 5);
        let started = Instant::now();
        let out =
            finish(spawn_upload(&upload_args(&tmp.join(format!("agent-{name}")), &g, &url, &ours, &[])), Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: an upload over another finalized one succeeded");
        assert!(err.contains("another upload for this artifact"), "{name}: unclear error: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{name}: took {:?}", started.elapsed());
        assert!(err.matches("retrying").count() <= 1, "{name}: retried a permanent refusal: {err}");
    }
    // The first upload's bytes are what is stored.
    assert_eq!(download_sha(&shim, "cmd-conflict"), (sha256_file(&theirs), 300_000));
}
