//! First-boot enrollment end to end: the real shim (`enroll-tokens` CLI, `POST /v1/enroll`), the real
//! agent enrolling from an enrollment file, real SQLite, everything on 127.0.0.1; on the embedded broker
//! and on Mosquitto with the production mTLS set-up (`mosquitto-config`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use scs_protocol::cose::{Signer as _, SigningKey};
use scs_testkit::{
    bin_path, free_port, outbox_seqs, wait_for, wait_until, Agent, AgentOpts, Api, Mosquitto, Shim, ShimOpts, TempDir,
};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `scs-cloud-shim enroll-tokens ARGS --data-dir D`; returns stdout, panics on failure.
fn enroll_tokens(data_dir: &Path, args: &[&str]) -> String {
    let o = Command::new(bin_path("scs-cloud-shim"))
        .arg("enroll-tokens")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run scs-cloud-shim enroll-tokens");
    assert!(
        o.status.success(),
        "enroll-tokens {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// A new token for `site`: (token id, token).
fn new_token(data_dir: &Path, site: &str, ttl: &str) -> (String, String) {
    let token = enroll_tokens(data_dir, &["add", "--site", site, "--ttl", ttl]).trim().to_owned();
    let list = enroll_tokens(data_dir, &["list"]);
    let id = list.lines().rfind(|l| l.starts_with("et-")).and_then(|l| l.split('\t').next()).expect("a listed token").to_owned();
    (id, token)
}

fn store(shim: &Shim) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(shim.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open scs.db")
}

fn stored_messages(shim: &Shim, gw: &str) -> i64 {
    store(shim).query_row("SELECT count(*) FROM ingest_receipts WHERE gateway_id = ?1", [gw], |r| r.get(0)).unwrap_or(0)
}

/// The enrollment request a gateway sends, as JSON (the agent sends CBOR; the shim takes both).
fn request(key: &SigningKey, gw: &str, site: Option<&str>) -> serde_json::Value {
    let pk = key.public_key();
    let msg = [b"scs-enroll-v1".as_slice(), b"\0", gw.as_bytes(), b"\0", pk.as_slice()].concat();
    let mut v = serde_json::json!({
        "gatewayId": gw,
        "publicKey": b64().encode(pk),
        "signature": b64().encode(key.sign_ed25519(&msg)),
    });
    if let Some(s) = site {
        v["site"] = s.into();
    }
    v
}

fn post_enroll(api: &Api, token: &str, body: &serde_json::Value) -> scs_testkit::Reply {
    api.request_with(
        "POST",
        "/v1/enroll",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(("application/json", body.to_string().as_bytes())),
    )
}

fn write_enroll_file(dir: &Path, api_url: &str, token: &str, gw: &str, extra: &str) -> PathBuf {
    let path = dir.join("enroll.toml");
    std::fs::write(
        &path,
        format!("api_url = \"{api_url}\"\ntoken = \"{token}\"\ngateway_id = \"{gw}\"\nretry_max_secs = 1\n{extra}"),
    )
    .expect("write enroll.toml");
    path
}

fn enrolling_agent(gw: &str, broker: &str, enroll_file: &Path, env: Vec<(String, String)>) -> Agent {
    let mut opts = AgentOpts::new(gw, broker);
    opts.args = vec!["--enroll-file".into(), enroll_file.display().to_string()];
    opts.env = env;
    Agent::start(opts)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_gateway_enrolls_with_a_site_token_and_its_signed_telemetry_is_stored() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("enroll-e2e");
    let out = tmp.join("enroll-out.toml");
    // The CLI writes the file an image carries; the token is printed once.
    let token =
        enroll_tokens(shim.data_dir(), &["add", "--site", "site-a", "--ttl", "1h", "--out", out.to_str().expect("utf-8 path")])
            .trim()
            .to_owned();
    assert!(token.starts_with("scs_enroll_"), "{token}");
    let written = std::fs::read_to_string(&out).expect("enroll file written");
    assert!(written.contains(&token) && written.contains(&shim.http_url()) && written.contains("site-a"), "{written}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).expect("stat").permissions().mode() & 0o777, 0o600);
    // Only the hash is stored.
    let stored_tokens: String =
        store(&shim).query_row("SELECT group_concat(sha256) FROM enrollment_tokens", [], |r| r.get(0)).expect("tokens");
    assert!(!stored_tokens.contains(&token));

    let gw = "gw-enrolled";
    let file = tmp.join("enroll.toml");
    std::fs::write(&file, format!("{written}gateway_id = \"{gw}\"\nretry_max_secs = 1\n")).expect("write");
    let agent = enrolling_agent(gw, &shim.mqtt_url(), &file, Vec::new());
    let identity_path = agent.data_dir().join("identity.toml");
    wait_for(Duration::from_secs(30), "identity.toml written by enrollment", || identity_path.exists().then_some(()));
    assert_eq!(std::fs::metadata(&identity_path).expect("stat").permissions().mode() & 0o777, 0o600);
    // Signed telemetry from the enrolled gateway is verified and stored.
    wait_for(Duration::from_secs(30), "telemetry of the enrolled gateway stored", || {
        (stored_messages(&shim, gw) >= 2).then_some(())
    });
    let signature_rejections: i64 = store(&shim)
        .query_row("SELECT coalesce(sum(count), 0) FROM rejections WHERE gateway_id = ?1", [gw], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(signature_rejections, 0);

    // The key was generated on the device: the shim holds only its public half.
    let identity: toml::Table = std::fs::read_to_string(&identity_path).expect("read identity").parse().expect("toml");
    let pkcs8 = b64().decode(identity["signing_key"].as_str().expect("signing_key")).expect("base64");
    let device_key = SigningKey::from_pkcs8(&pkcs8).expect("pkcs8");
    let (stored_key, token_id): (Vec<u8>, String) = store(&shim)
        .query_row(
            "SELECT g.public_key, e.token_id FROM gateways g JOIN enrollments e ON e.gateway_id = g.id WHERE g.id = ?1",
            [gw],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("gateway and enrollment rows");
    assert_eq!(stored_key, device_key.public_key());
    assert!(enroll_tokens(shim.data_dir(), &["list"]).contains(&format!("enrolled\t{gw}\ttoken={token_id}\tsite=site-a")));
    assert!(!agent.data_dir().join("enroll-key.pk8").exists(), "the waiting key is removed once installed");
    // No private key material anywhere in the shim's data dir or its logs. The seed is the last 32 bytes of
    // ring's PKCS#8 v2 prefix + seed; look for the whole document, the seed and their base64 forms.
    let needles: Vec<Vec<u8>> = vec![
        pkcs8.clone(),
        pkcs8.get(16..48).expect("seed").to_vec(),
        b64().encode(&pkcs8).into_bytes(),
        b64().encode(pkcs8.get(16..48).expect("seed")).into_bytes(),
    ];
    let mut scanned = files(shim.data_dir());
    scanned.extend(
        files(shim.data_dir().parent().expect("shim temp dir")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")),
    );
    assert!(scanned.len() > 3, "{scanned:?}");
    for path in scanned {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "private key material in {}", path.display());
        }
    }
}

#[test]
fn tokens_are_single_use_expiring_revocable_and_site_scoped() {
    let shim = Shim::start(ShimOpts::default());
    let api = shim.api().with_token(None);
    let dir = shim.data_dir();
    let k = |_: u8| SigningKey::generate().expect("key").0;

    // No token, or an unknown one: 401 before the body is read (a huge body does not matter).
    let r = api.request("POST", "/v1/enroll", Some(("application/json", b"{}")));
    assert_eq!(r.status, 401, "{}", r.text());
    let huge = vec![b'x'; 1 << 20];
    // The shim answers 401 and closes without reading the body, so the client sees the 401 or, still
    // writing, a broken connection; either way nothing was read.
    match api.try_request_with(
        "POST",
        "/v1/enroll",
        &[("Authorization", "Bearer scs_enroll_nope")],
        Some(("application/json", &huge)),
    ) {
        Ok(r) => assert_eq!(r.status, 401, "{}", r.text()),
        Err(e) => assert!(e.to_string().contains("pipe") || e.to_string().contains("reset"), "{e}"),
    }
    // An API token is not an enrollment token.
    let r = post_enroll(&api, shim.token(), &request(&k(0), "gw-x", None));
    assert_eq!(r.status, 401, "{}", r.text());

    let (_, t1) = new_token(dir, "site-a", "1h");
    // Bad bodies are refused without using the token up.
    let r = api.request_with(
        "POST",
        "/v1/enroll",
        &[("Authorization", &format!("Bearer {t1}"))],
        Some(("application/json", b"{\"gatewayId\":1}")),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let mut forged = request(&k(0), "gw-a1", None);
    forged["publicKey"] = b64().encode(k(1).public_key()).into();
    assert_eq!(post_enroll(&api, &t1, &forged).status, 400, "a signature by another key is no proof");
    let r = post_enroll(&api, &t1, &request(&k(0), "gw-a1", Some("site-b")));
    assert_eq!(r.status, 403, "wrong site: {}", r.text());

    let key_a1 = k(0);
    let r = post_enroll(&api, &t1, &request(&key_a1, "gw-a1", Some("site-a")));
    assert_eq!(r.status, 201, "{}", r.text());
    let answer: toml::Table = r.text().parse().expect("bundle without signing_key");
    assert_eq!(answer["gateway_id"].as_str(), Some("gw-a1"));
    assert!(!answer.contains_key("signing_key"));
    assert_eq!(answer["broker_url"].as_str(), Some(shim.mqtt_url().as_str()));
    // Used twice (another gateway): refused.
    let r = post_enroll(&api, &t1, &request(&k(0), "gw-a2", None));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("used up"), "{}", r.text());
    // The same device repeating (its answer was lost): a fresh password, still one gateway.
    let r = post_enroll(&api, &t1, &request(&key_a1, "gw-a1", None));
    assert_eq!(r.status, 201, "{}", r.text());
    let again: toml::Table = r.text().parse().expect("bundle");
    assert_ne!(again["mqtt_password"].as_str(), answer["mqtt_password"].as_str());

    // An active gateway id cannot be taken over with a new token and another key.
    let (_, t2) = new_token(dir, "site-a", "1h");
    let r = post_enroll(&api, &t2, &request(&k(0), "gw-a1", None));
    assert_eq!(r.status, 409, "{}", r.text());

    // Expired.
    let (_, t3) = new_token(dir, "site-a", "500ms");
    std::thread::sleep(Duration::from_millis(700));
    let r = post_enroll(&api, &t3, &request(&k(0), "gw-a3", None));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());

    // Revoked.
    let (id4, t4) = new_token(dir, "site-a", "1h");
    enroll_tokens(dir, &["revoke", &id4]);
    let r = post_enroll(&api, &t4, &request(&k(0), "gw-a4", None));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("revoked"), "{}", r.text());

    // Multi-use tokens count their uses.
    let multi = enroll_tokens(dir, &["add", "--site", "site-m", "--ttl", "1h", "--max-uses", "2"]).trim().to_owned();
    assert_eq!(post_enroll(&api, &multi, &request(&k(0), "gw-m1", None)).status, 201);
    assert_eq!(post_enroll(&api, &multi, &request(&k(0), "gw-m2", None)).status, 201);
    assert_eq!(post_enroll(&api, &multi, &request(&k(0), "gw-m3", None)).status, 401);
    let gateways: i64 = store(&shim).query_row("SELECT count(*) FROM gateways", [], |r| r.get(0)).expect("count");
    assert_eq!(gateways, 3, "gw-a1, gw-m1, gw-m2");
}

#[test]
fn an_agent_started_while_the_cloud_is_down_keeps_retrying_and_enrolls_when_it_comes_up() {
    let tmp = TempDir::new("enroll-offline");
    // The shim's data dir and ports are fixed first, so the token exists before anything listens.
    let shim_dir = tmp.join("shim-data");
    std::fs::create_dir_all(&shim_dir).expect("mkdir");
    let (http_port, mqtt_port) = (free_port(), free_port());
    let token = enroll_tokens(&shim_dir, &["add", "--site", "site-o", "--ttl", "1h"]).trim().to_owned();
    let gw = "gw-offline";
    let file = write_enroll_file(tmp.path(), &format!("http://127.0.0.1:{http_port}"), &token, gw, "site = \"site-o\"\n");
    let heartbeat = tmp.join("heartbeat");
    let mut agent = enrolling_agent(
        gw,
        &format!("mqtt://127.0.0.1:{mqtt_port}"),
        &file,
        vec![("SCS_HEARTBEAT_FILE".into(), heartbeat.display().to_string())],
    );
    // Offline: it retries (and says so) and keeps its watchdog heartbeat going.
    wait_for(Duration::from_secs(20), "two failed enrollment attempts", || {
        (agent.logs().matches("retrying in about").count() >= 2).then_some(())
    });
    assert!(agent.is_running());
    assert!(heartbeat.exists(), "the watchdog heartbeat is written while enrolling");
    let key_file = agent.data_dir().join("enroll-key.pk8");
    let waiting_key = std::fs::read(&key_file).expect("the device key waits in the data dir");
    assert!(!agent.data_dir().join("identity.toml").exists());

    let shim = Shim::start(ShimOpts {
        data_dir: Some(shim_dir),
        http_port: Some(http_port),
        mqtt_port: Some(mqtt_port),
        ..ShimOpts::default()
    });
    let identity_path = agent.data_dir().join("identity.toml");
    wait_for(Duration::from_secs(30), "enrolled once the cloud is up", || identity_path.exists().then_some(()));
    wait_for(Duration::from_secs(30), "telemetry stored", || (stored_messages(&shim, gw) >= 1).then_some(()));
    // The key it waited with is the key it enrolled with.
    let stored_key: Vec<u8> =
        store(&shim).query_row("SELECT public_key FROM gateways WHERE id = ?1", [gw], |r| r.get(0)).expect("row");
    assert_eq!(stored_key, SigningKey::from_pkcs8(&waiting_key).expect("pkcs8").public_key());
    // A restart runs from identity.toml and does not enroll again (the token is used up).
    agent.restart();
    let before = stored_messages(&shim, gw);
    assert!(wait_until(Duration::from_secs(30), || stored_messages(&shim, gw) > before + 1), "{}", agent.logs());
    let enrollments: i64 = store(&shim).query_row("SELECT count(*) FROM enrollments", [], |r| r.get(0)).expect("count");
    assert_eq!(enrollments, 1);
}

#[test]
fn an_agent_with_a_refused_token_keeps_trying_and_enrolls_once_the_file_is_replaced() {
    let shim = Shim::start(ShimOpts::default());
    let tmp = TempDir::new("enroll-refused");
    let (id, used) = new_token(shim.data_dir(), "site-r", "1h");
    enroll_tokens(shim.data_dir(), &["revoke", &id]);
    let gw = "gw-refused";
    let file = write_enroll_file(tmp.path(), &shim.http_url(), &used, gw, "");
    let agent = enrolling_agent(gw, &shim.mqtt_url(), &file, Vec::new());
    wait_for(Duration::from_secs(20), "the refusal logged twice", || {
        (agent.logs().matches("HTTP 401").count() >= 2).then_some(())
    });
    assert!(!agent.logs().contains(&used), "the token never appears in the log");
    let (_, fresh) = new_token(shim.data_dir(), "site-r", "1h");
    write_enroll_file(tmp.path(), &shim.http_url(), &fresh, gw, "");
    wait_for(Duration::from_secs(30), "telemetry after the new token", || (stored_messages(&shim, gw) >= 1).then_some(()));
}

/// The production broker set-up: Mosquitto with mutual TLS and the generated ACL (`mosquitto-config`).
/// Enrollment issues the client certificate over the key the gateway generated; the agent connects to
/// Mosquitto with it (Ed25519 client authentication) and its telemetry is stored and receipted.
#[test]
fn an_enrolled_gateway_connects_to_mosquitto_with_mtls_and_its_telemetry_is_receipted() {
    let tmp = TempDir::new("enroll-mtls");
    let data = tmp.join("shim-data");
    let out = tmp.join("mosquitto");
    let broker = Mosquitto::start_conf(|port| {
        let o = Command::new(bin_path("scs-cloud-shim"))
            .args(["mosquitto-config", "--data-dir"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .output()
            .expect("run mosquitto-config");
        assert!(o.status.success(), "mosquitto-config: {}", String::from_utf8_lossy(&o.stderr));
        let conf = std::fs::read_to_string(out.join("mosquitto.conf")).expect("generated mosquitto.conf");
        // Started as root, Mosquitto switches to its own user, which cannot read our private temp files
        // (in production they are chowned to it, see docs/deploy.md).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            format!("user root\n{conf}")
        } else {
            conf
        }
    });
    let broker_url = format!("mqtts://127.0.0.1:{}", broker.port());
    let shim = Shim::start(ShimOpts {
        data_dir: Some(data.clone()),
        broker: Some(broker_url.clone()),
        args: vec![
            "--broker-ca".into(),
            out.join("ca.pem").display().to_string(),
            "--broker-client-cert".into(),
            out.join("shim.pem").display().to_string(),
            "--broker-client-key".into(),
            out.join("shim.key").display().to_string(),
        ],
        ..ShimOpts::default()
    });
    let enroll_out = tmp.join("enroll-out.toml");
    enroll_tokens(&data, &["add", "--site", "site-t", "--ttl", "1h", "--out", enroll_out.to_str().expect("utf-8")]);
    let gw = "gw-mtls-enrolled";
    let file = tmp.join("enroll.toml");
    let written = std::fs::read_to_string(&enroll_out).expect("enroll file");
    std::fs::write(&file, format!("{written}gateway_id = \"{gw}\"\nretry_max_secs = 1\n")).expect("write");
    let agent = enrolling_agent(gw, &broker_url, &file, Vec::new());
    let identity_path = agent.data_dir().join("identity.toml");
    wait_for(Duration::from_secs(30), "identity.toml written by enrollment", || identity_path.exists().then_some(()));

    // The identity carries the broker CA and a client certificate for the device's own key.
    let identity: toml::Table = std::fs::read_to_string(&identity_path).expect("read identity").parse().expect("toml");
    let cert_pem = identity["client_cert_pem"].as_str().expect("a client certificate from enrollment");
    assert!(identity["broker_ca_pem"].as_str().is_some_and(|ca| ca.contains("BEGIN CERTIFICATE")));
    let pkcs8 = b64().decode(identity["signing_key"].as_str().expect("signing_key")).expect("base64");
    let device_public = SigningKey::from_pkcs8(&pkcs8).expect("pkcs8").public_key();
    let cert_der = pem_body(cert_pem);
    assert!(
        cert_der.windows(device_public.len()).any(|w| w == device_public.as_slice()),
        "the client certificate is not over the device's own key"
    );

    // Connected through TLS with the certificate's CN as its MQTT identity; telemetry stored and receipted.
    wait_for(Duration::from_secs(30), "telemetry of the enrolled gateway stored", || {
        (stored_messages(&shim, gw) >= 3).then_some(())
    });
    assert!(broker.logs().contains(&format!("u'{gw}'")), "Mosquitto did not take the CN as username:\n{}", broker.logs());
    let db = agent.data_dir().join("agent.db");
    let receipted = wait_until(Duration::from_secs(30), || {
        let left = outbox_seqs(&db);
        left.len() <= 2 && scs_testkit::outbox_next_seq(&open_ro(&db)).unwrap_or(0) > 3
    });
    assert!(receipted, "the outbox did not drain (receipts over Mosquitto): {:?}\n{}", outbox_seqs(&db), agent.logs());
    let rejected: i64 = store(&shim)
        .query_row("SELECT coalesce(sum(count), 0) FROM rejections WHERE gateway_id = ?1", [gw], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(rejected, 0);
}

fn open_ro(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open agent.db")
}

/// The DER bytes of the first PEM block.
fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    b64().decode(body).expect("PEM base64")
}
