//! The artifact endpoints over real HTTP(S) on 127.0.0.1: a server with only these routes, a ureq client,
//! and a raw socket for cut-off requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ring::digest;
use rusqlite::Connection;
use serde_json::Value;

use super::tokens::{hex, now_ms, Claims, Purpose, SIGNING_KEY_FILE};
use super::{Artifacts, ArtifactsConfig};
use crate::objects::FsObjectStore;

/// The test gateway's HTTP Basic credentials: base64("gw-t:gw-secret").
const GW_AUTH: &str = "Basic Z3ctdDpndy1zZWNyZXQ=";
/// Another registered gateway: base64("gw-o:other-secret").
const OTHER_GW_AUTH: &str = "Basic Z3ctbzpvdGhlci1zZWNyZXQ=";

struct Server {
    base: String,
    art: Artifacts,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scs-art-{tag}-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn start_with(tag: &str, max_bytes: u64, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let dir = temp_dir(tag);
    // One fixed key for every server in this process (the download-URL signer is process-wide).
    std::fs::write(dir.join(SIGNING_KEY_FILE), "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n")
        .expect("key");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let base = if tls.is_some() { format!("https://localhost:{port}") } else { format!("http://127.0.0.1:{port}") };
    let mut conn = Connection::open(dir.join("scs.db")).expect("db");
    crate::store::migrations::migrate(&mut conn).expect("migrations");
    conn.execute_batch(crate::access::GATEWAYS_FIXTURE).expect("gateways table");
    for (gw, pw) in [("gw-t", "gw-secret"), ("gw-o", "other-secret")] {
        conn.execute(
            "INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES (?1, x'00', ?2, 'active', 0)",
            [gw, &crate::access::sha256_hex(pw.as_bytes())],
        )
        .expect("gateway row");
    }
    let mut cfg = ArtifactsConfig::new(&dir, &base);
    cfg.max_artifact_bytes = max_bytes;
    let art = Artifacts::with_parts(cfg, Arc::new(FsObjectStore::open(&dir).expect("objects")), conn).expect("service");
    let app = super::api::upload_routes::<Artifacts>().with_state(art.clone());
    match tls {
        None => drop(rt.spawn(async move { axum::serve(listener, app).await })),
        Some(cfg) => {
            let _guard = rt.enter();
            let l = crate::tls::TlsListener::new(listener, cfg).expect("tls listener");
            drop(rt.spawn(async move { axum::serve(l, app).await }));
        }
    }
    Server { base, art, dir, rt }
}

fn start(tag: &str) -> Server {
    start_with(tag, 64 << 20, None)
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into()
}

fn sha(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn body_json(resp: &mut ureq::http::Response<ureq::Body>) -> Value {
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn header_u64(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// A grant for `command` of gateway gw-t, as the command sessions mint it (the command row binds the grant
/// to its gateway).
fn grant(s: &Server, command: &str) -> (String, String) {
    let cmd = command.to_owned();
    s.rt.block_on(s.art.with_db(move |c| {
        c.execute(
            "INSERT OR IGNORE INTO commands (id, gateway_id, type, params, state, requested_by, created_at, updated_at,
             expires_at, timeout_secs) VALUES (?1, 'gw-t', 'diag.log_bundle', '{}', 'queued', 'test', 0, 0, 0, 60)",
            [&cmd],
        )
        .map(drop)
        .map_err(|source| super::store::StoreError::Sql { artifact: cmd.clone(), source })
    }))
    .expect("command row");
    let g = s.art.mint_upload_grant(command, Duration::from_secs(600));
    (g.artifact, g.token)
}

fn create(s: &Server, id: &str, token: &str, name: &str, data: &[u8]) -> ureq::http::Response<ureq::Body> {
    client()
        .post(&format!("{}/v1/uploads/{id}", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", token)
        .content_type("application/json")
        .send(
            serde_json::json!({"name": name, "size": data.len(), "sha256": sha(data), "contentType": "application/gzip"})
                .to_string(),
        )
        .expect("create")
}

fn patch(s: &Server, id: &str, token: &str, offset: u64, chunk: &[u8]) -> ureq::http::Response<ureq::Body> {
    client()
        .patch(&format!("{}/v1/uploads/{id}", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", token)
        .header("Upload-Offset", &offset.to_string())
        .content_type("application/offset+octet-stream")
        .send(chunk)
        .expect("patch")
}

fn head(s: &Server, id: &str, token: &str) -> ureq::http::Response<ureq::Body> {
    client()
        .head(&format!("{}/v1/uploads/{id}", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", token)
        .call()
        .expect("head")
}

fn finalize(s: &Server, id: &str, token: &str) -> ureq::http::Response<ureq::Body> {
    client()
        .post(&format!("{}/v1/uploads/{id}/finalize", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", token)
        .send_empty()
        .expect("finalize")
}

fn get(url: &str, range: Option<&str>) -> (u16, Vec<u8>, ureq::http::HeaderMap) {
    let mut req = client().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let mut resp = req.call().expect("get");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap_or_default();
    (status, body, headers)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

#[test]
fn upload_resume_finalize_download_with_ranges() {
    let s = start("happy");
    let data = pattern(3 * 1024 * 1024 + 17);
    let (id, token) = grant(&s, "cmd-1");
    let mut r = create(&s, &id, &token, "../../etc/bundle.tar.gz", &data);
    assert_eq!(r.status(), 201, "{:?}", body_json(&mut r));
    assert_eq!(header_u64(&r, "upload-offset"), Some(0));
    // Chunks, with a wrong offset and a repeated create in between.
    let first = 1024 * 1024;
    assert_eq!(patch(&s, &id, &token, 0, &data[..first]).status(), 204);
    let wrong = patch(&s, &id, &token, 5, &data[5..10]);
    assert_eq!(wrong.status(), 409);
    assert_eq!(header_u64(&wrong, "upload-offset"), Some(first as u64));
    let again = create(&s, &id, &token, "bundle.tar.gz", &data);
    assert_eq!((again.status().as_u16(), header_u64(&again, "upload-offset")), (200, Some(first as u64)));
    assert_eq!(header_u64(&head(&s, &id, &token), "upload-offset"), Some(first as u64));
    let early = finalize(&s, &id, &token);
    assert_eq!(early.status(), 409, "finalize before all bytes arrived");
    let r = patch(&s, &id, &token, first as u64, &data[first..]);
    assert_eq!((r.status().as_u16(), header_u64(&r, "upload-offset")), (204, Some(data.len() as u64)));
    let mut fin = finalize(&s, &id, &token);
    assert_eq!(fin.status(), 200);
    let meta = body_json(&mut fin);
    assert_eq!(meta["name"], "bundle.tar.gz", "name sanitized: no path components");
    assert_eq!(meta["sha256"], sha(&data));
    assert_eq!(finalize(&s, &id, &token).status(), 200, "finalize is idempotent");
    assert_eq!(patch(&s, &id, &token, data.len() as u64, b"x").status(), 409);

    // Listed with a download URL; full body, ranges and an unsatisfiable range.
    let conn = Connection::open(s.dir.join("scs.db")).expect("db");
    let list = super::store::list_for_command(&conn, "cmd-1", &s.base).expect("list");
    assert_eq!(list.len(), 1);
    let url = list[0]["url"].as_str().expect("url").to_string();
    let (st, body, h) = get(&url, None);
    assert_eq!(st, 200);
    assert!(body == data, "downloaded bytes differ");
    assert_eq!(h.get("accept-ranges").and_then(|v| v.to_str().ok()), Some("bytes"));
    let (st, body, h) = get(&url, Some("bytes=100-199"));
    assert_eq!((st, body.as_slice()), (206, &data[100..200]));
    assert_eq!(h.get("content-range").and_then(|v| v.to_str().ok()), Some(format!("bytes 100-199/{}", data.len()).as_str()));
    let (st, body, _) = get(&url, Some("bytes=-10"));
    assert_eq!((st, body.as_slice()), (206, &data[data.len() - 10..]));
    let (st, _, h) = get(&url, Some(&format!("bytes={}-", data.len())));
    assert_eq!(st, 416);
    assert_eq!(h.get("content-range").and_then(|v| v.to_str().ok()), Some(format!("bytes */{}", data.len()).as_str()));
}

#[test]
fn checksum_mismatch_is_rejected_and_discarded() {
    let s = start("mismatch");
    let data = pattern(100_000);
    let (id, token) = grant(&s, "cmd-2");
    assert_eq!(create(&s, &id, &token, "x.bin", &data).status(), 201);
    let mut corrupt = data.clone();
    corrupt[50_000] ^= 0xff;
    assert_eq!(patch(&s, &id, &token, 0, &corrupt).status(), 204);
    let mut fin = finalize(&s, &id, &token);
    assert_eq!(fin.status(), 422);
    assert_eq!(body_json(&mut fin)["actual"], sha(&corrupt));
    assert_eq!(head(&s, &id, &token).status(), 404, "discarded");
    assert!(!s.dir.join("objects/staging").join(&id).exists());
    // A fresh create starts over from zero and can succeed.
    assert_eq!(create(&s, &id, &token, "x.bin", &data).status(), 201);
    assert_eq!(patch(&s, &id, &token, 0, &data).status(), 204);
    assert_eq!(finalize(&s, &id, &token).status(), 200);
}

#[test]
fn size_caps_and_bad_input() {
    let s = start_with("caps", 1000, None);
    let (id, token) = grant(&s, "cmd-3");
    assert_eq!(create(&s, &id, &token, "big", &pattern(1001)).status(), 413);
    let data = pattern(600);
    assert_eq!(create(&s, &id, &token, "ok", &data).status(), 201);
    let over = patch(&s, &id, &token, 0, &pattern(700));
    assert_eq!(over.status(), 413, "chunk past the declared size");
    assert_eq!(header_u64(&head(&s, &id, &token), "upload-offset"), Some(0));
    let missing_offset = client()
        .patch(&format!("{}/v1/uploads/{id}", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", &token)
        .send(&data[..])
        .expect("patch");
    assert_eq!(missing_offset.status(), 400);
    let bad_sha = client()
        .post(&format!("{}/v1/uploads/{id}", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", &token)
        .send(r#"{"name":"x","size":1,"sha256":"zz"}"#)
        .expect("create");
    assert_eq!(bad_sha.status(), 400);
    // A traversal id never reaches the object store: refused before the token is even looked at.
    for evil in ["..", "%2e%2e", ".hidden"] {
        let r = client()
            .post(&format!("{}/v1/uploads/{evil}", s.base))
            .header("Authorization", GW_AUTH)
            .header("Upload-Token", &token)
            .send("{}")
            .expect("post");
        assert_eq!(r.status(), 400, "{evil}");
    }
}

#[test]
fn forged_expired_and_misbound_tokens_get_403() {
    let s = start("tokens");
    let data = pattern(1000);
    let (id, token) = grant(&s, "cmd-4");
    let (other_id, other_token) = grant(&s, "cmd-4");
    assert_eq!(create(&s, &id, &other_token, "x", &data).status(), 403, "token of another artifact");
    let forged = token.replacen("cmd-4", "cmd-5", 1);
    assert_eq!(create(&s, &id, &forged, "x", &data).status(), 403, "forged command binding");
    let key = s.art.signing_key();
    let expired =
        key.mint(&Claims { purpose: Purpose::Upload, artifact: id.clone(), command: "cmd-4".into(), expires_ms: now_ms() - 1 });
    assert_eq!(create(&s, &id, &expired, "x", &data).status(), 403, "expired");
    let no_auth = client().post(&format!("{}/v1/uploads/{id}", s.base)).send("{}").expect("post");
    assert_eq!(no_auth.status(), 401);
    assert_eq!(create(&s, &id, &token, "x", &data).status(), 201);
    assert_eq!(patch(&s, &id, &token, 0, &data).status(), 204);
    assert_eq!(finalize(&s, &id, &token).status(), 200);
    let _ = other_id;

    let base = format!("{}/v1/artifacts/{id}", s.base);
    let good = key.mint(&Claims {
        purpose: Purpose::Download,
        artifact: id.clone(),
        command: "cmd-4".into(),
        expires_ms: now_ms() + 60_000,
    });
    assert_eq!(get(&format!("{base}?token={good}"), None).0, 200);
    let expired =
        key.mint(&Claims { purpose: Purpose::Download, artifact: id.clone(), command: "cmd-4".into(), expires_ms: now_ms() - 1 });
    let wrong_art = key.mint(&Claims {
        purpose: Purpose::Download,
        artifact: other_id,
        command: "cmd-4".into(),
        expires_ms: now_ms() + 60_000,
    });
    let sig = good.rsplit_once('~').map(|(_, s)| s.to_string()).expect("sig");
    let tampered = good.replacen(&sig[..4], if &sig[..4] == "0000" { "1111" } else { "0000" }, 1);
    let extended = good.replace(&format!("~{}~", good.split('~').nth(4).expect("expiry")), "~99999999999999~");
    for (what, t) in [
        ("expired", expired),
        ("other artifact", wrong_art),
        ("upload token", token),
        ("tampered", tampered),
        ("extended", extended),
    ] {
        assert_eq!(get(&format!("{base}?token={t}"), None).0, 403, "{what}");
    }
    assert_eq!(get(&base, None).0, 403, "no token");
}

/// A valid grant is useless without its own gateway's credentials: none, another gateway's, a wrong
/// password, or the grant token in the Authorization header instead.
#[test]
fn grant_needs_its_own_gateways_credentials() {
    let s = start("gwauth");
    let data = pattern(100);
    let (id, token) = grant(&s, "cmd-9");
    let body = serde_json::json!({"name": "x", "size": data.len(), "sha256": sha(&data)}).to_string();
    let url = format!("{}/v1/uploads/{id}", s.base);
    let bearer = format!("Bearer {token}");
    for (what, auth, status) in [
        ("no credentials", None, 401),
        ("grant as bearer", Some(bearer.as_str()), 401),
        ("wrong password", Some("Basic Z3ctdDpub3BlOg=="), 401),
        ("other gateway", Some(OTHER_GW_AUTH), 403),
    ] {
        let mut req = client().post(&url).header("Upload-Token", &token);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let mut r = req.send(&body).expect("post");
        assert_eq!(r.status(), status, "{what}");
        assert!(body_json(&mut r)["error"].is_string(), "{what}: JSON error");
    }
    let no_grant = client().post(&url).header("Authorization", GW_AUTH).send(&body).expect("post");
    assert_eq!(no_grant.status(), 401, "credentials without a grant");
    assert_eq!(create(&s, &id, &token, "x", &data).status(), 201);
}

/// A PATCH whose connection dies mid-body commits exactly the bytes that arrived; HEAD reports them.
#[test]
fn cut_patch_commits_what_arrived() {
    let s = start("cut");
    let data = pattern(1 << 20);
    let (id, token) = grant(&s, "cmd-6");
    assert_eq!(create(&s, &id, &token, "x", &data).status(), 201);
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut sock = TcpStream::connect(&addr).expect("connect");
    let sent = 300 * 1024;
    write!(
        sock,
        "PATCH /v1/uploads/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {GW_AUTH}\r\nUpload-Token: {token}\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .expect("headers");
    sock.write_all(&data[..sent]).expect("partial body");
    sock.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(100));
    drop(sock);
    // HEAD waits for the cut PATCH to commit, so no sleep-and-hope here.
    let r = head(&s, &id, &token);
    assert_eq!(header_u64(&r, "upload-offset"), Some(sent as u64));
    assert_eq!(patch(&s, &id, &token, sent as u64, &data[sent..]).status(), 204);
    assert_eq!(finalize(&s, &id, &token).status(), 200);
    let mut stored = Vec::new();
    std::fs::File::open(s.dir.join("objects/final").join(&id)).expect("object").read_to_end(&mut stored).expect("read");
    assert!(stored == data);
}

#[test]
fn https_with_a_generated_ca() {
    let dir = temp_dir("pem");
    let pem = scs_testkit::generate_tls(&dir, &["localhost", "127.0.0.1"]);
    let cfg = crate::tls::load_server_config(&pem.cert, &pem.key).expect("tls config");
    let s = start_with("https", 1 << 20, Some(cfg));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ureq::tls::Certificate::from_der(&pem.ca_der).to_owned()]))
        .unversioned_rustls_crypto_provider(provider.clone())
        .build();
    let https: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into();
    let (id, token) = grant(&s, "cmd-7");
    let data = pattern(10);
    let body = serde_json::json!({"name": "x", "size": data.len(), "sha256": sha(&data)}).to_string();
    let r = https
        .post(&format!("{}/v1/uploads/{id}", s.base))
        .header("Authorization", GW_AUTH)
        .header("Upload-Token", &token)
        .send(&body);
    assert_eq!(r.expect("https request").status(), 201);

    // A client that does not trust the generated CA is refused by the handshake.
    let other_ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("p")
        .self_signed(&rcgen::KeyPair::generate().expect("k"))
        .expect("c");
    let untrusting = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ureq::tls::Certificate::from_der(other_ca.der()).to_owned()]))
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let bad: ureq::Agent = ureq::Agent::config_builder().tls_config(untrusting).build().into();
    assert!(bad.get(&format!("{}/v1/artifacts/x?token=y", s.base)).call().is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Crash leftovers heal: bytes moved to their final place without the metadata row, and a staged object
/// left behind by a discard without its upload row.
#[test]
fn interrupted_finalize_and_orphan_objects_recover() {
    let s = start("recover");
    let data = pattern(200_000);
    let (id, token) = grant(&s, "cmd-8");
    assert_eq!(create(&s, &id, &token, "x", &data).status(), 201);
    assert_eq!(patch(&s, &id, &token, 0, &data).status(), 204);
    let key = crate::objects::ObjectKey::for_artifact(&id).expect("key");
    s.rt.block_on(s.art.objects().finalize(&key)).expect("rename as a crashed finalize would");
    let mut fin = finalize(&s, &id, &token);
    assert_eq!(fin.status(), 200, "{:?}", body_json(&mut fin));

    let (id2, token2) = grant(&s, "cmd-8");
    std::fs::write(s.dir.join("objects/staging").join(&id2), b"stale bytes").expect("orphan");
    let r = create(&s, &id2, &token2, "y", &data);
    assert_eq!((r.status().as_u16(), header_u64(&r, "upload-offset")), (201, Some(0)));
    assert_eq!(header_u64(&head(&s, &id2, &token2), "upload-offset"), Some(0), "leftover bytes replaced");
}
