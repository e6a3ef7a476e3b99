//! Releases end to end: a real agent binary with another version, signed by `scripts/build-release`
//! (OpenSSL, a throwaway release key), stored by `scs-cloud-shim releases add`, offered to a running
//! agent through the real shim and its embedded broker; the agent, started through the real
//! `packaging/scs-agent-launch` in a restart loop, downloads it over the tokenized URL (with `Range`),
//! verifies, installs, restarts into it and reports the new version in its inventory.
//!
//! The new version is this build's agent, stripped and with its version string replaced by another one
//! of the same length, so it is a different binary that genuinely reports that version.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use scs_testkit::releases::{agent_with_version, build_release, other_version, sign, target_triple};
use scs_testkit::{bin_path, wait_for, Shim, ShimOpts, Supervised, TempDir};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);

/// `scs-cloud-shim releases ARGS --data-dir D`: (success, stdout + stderr).
fn releases(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(bin_path("scs-cloud-shim"))
        .arg("releases")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run scs-cloud-shim releases");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn gateway_attrs(shim: &Shim, gw: &str) -> Value {
    let c = rusqlite::Connection::open_with_flags(shim.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
    let attrs: Option<String> = c.query_row("SELECT attrs FROM sensors WHERE id = ?1", [gw], |r| r.get(0)).ok().flatten();
    attrs.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or(Value::Null)
}

#[test]
fn a_signed_release_is_stored_offered_installed_and_reported_by_the_agent() {
    assert!(Command::new("openssl").arg("version").output().is_ok(), "openssl is needed by scripts/build-release");
    let shim = Shim::start(ShimOpts::default());
    let api = shim.api();
    let tmp = TempDir::new("releases");
    let keys = tmp.join("keys");
    build_release(&["--gen-test-key", keys.to_str().expect("utf-8")], &[]);
    let (pem, public) = (keys.join("release-key.pem"), keys.join("release-key.pub"));

    // The new agent, signed the release way.
    let version = other_version(env!("CARGO_PKG_VERSION"));
    let build = tmp.join("build");
    std::fs::create_dir_all(&build).expect("mkdir");
    let binary = agent_with_version(&build, &version);
    let triple = target_triple();
    let manifest = sign(&binary, &version, &triple, &pem);
    let public_s = public.to_str().expect("utf-8");

    // A release whose signature is by another key is refused, and so is one whose bytes changed.
    let forger = tmp.join("forger");
    build_release(&["--gen-test-key", forger.to_str().expect("utf-8")], &[]);
    let forged_dir = tmp.join("forged");
    std::fs::create_dir_all(&forged_dir).expect("mkdir");
    let forged_bin = forged_dir.join("scs-agent");
    std::fs::copy(&binary, &forged_bin).expect("copy");
    let forged = sign(&forged_bin, &version, &triple, &forger.join("release-key.pem"));
    let (ok, out) = releases(shim.data_dir(), &["add", forged.to_str().expect("utf-8"), "--release-key", public_s]);
    assert!(!ok && out.contains("signature does not verify"), "{out}");
    let update_file = manifest.with_extension("");
    let tampered_dir = tmp.join("tampered");
    std::fs::create_dir_all(&tampered_dir).expect("mkdir");
    let tampered = tampered_dir.join(manifest.file_name().expect("name"));
    std::fs::copy(&manifest, &tampered).expect("copy manifest");
    let mut bytes = std::fs::read(&update_file).expect("read update");
    bytes.extend_from_slice(b"tampered");
    std::fs::write(tampered_dir.join(update_file.file_name().expect("name")), bytes).expect("write");
    let (ok, out) = releases(shim.data_dir(), &["add", tampered.to_str().expect("utf-8"), "--release-key", public_s]);
    assert!(!ok && out.contains("signed size"), "{out}");
    let (_, listed) = releases(shim.data_dir(), &["list"]);
    assert_eq!(listed.lines().count(), 1, "nothing stored by the refused adds: {listed}");
    assert!(std::fs::read_dir(shim.data_dir().join("objects/final")).map(|d| d.count()).unwrap_or(0) == 0);

    // The genuine one is stored (by its .update file; its manifest sits beside it), once.
    let (ok, out) = releases(shim.data_dir(), &["add", update_file.to_str().expect("utf-8"), "--release-key", public_s]);
    assert!(ok, "{out}");
    let (ok, again) = releases(shim.data_dir(), &["add", manifest.to_str().expect("utf-8"), "--release-key", public_s]);
    assert!(ok && again.contains("already stored"), "{again}");
    // The same bytes signed for an architecture no gateway here has, to see the arch check refuse it.
    let foreign = if std::env::consts::ARCH == "aarch64" { "armv7-unknown-linux-gnueabihf" } else { "aarch64-unknown-linux-gnu" };
    let foreign_dir = tmp.join("foreign");
    std::fs::create_dir_all(&foreign_dir).expect("mkdir");
    std::fs::copy(&binary, foreign_dir.join("scs-agent")).expect("copy");
    let foreign_manifest = sign(&foreign_dir.join("scs-agent"), "9.9.9", foreign, &pem);
    let (ok, out) = releases(shim.data_dir(), &["add", foreign_manifest.to_str().expect("utf-8"), "--release-key", public_s]);
    assert!(ok, "{out}");

    let list = api.get_json("/v1/releases");
    let ours = list["releases"].as_array().expect("releases").iter().find(|r| r["version"] == version.as_str()).cloned();
    let ours = ours.unwrap_or_else(|| panic!("release {version} not listed: {list}"));
    assert_eq!(ours["target"], triple.as_str());
    assert_eq!(ours["arch"], std::env::consts::ARCH);
    assert_eq!(ours["size"], std::fs::metadata(&update_file).expect("stat").len());
    assert!(ours["id"].as_str().expect("id").starts_with("rel-"));
    assert!(shim.data_dir().join("objects/final").join(format!("releases.{}", ours["id"].as_str().expect("id"))).is_file());
    assert_eq!(api.with_token(None).get("/v1/releases").status, 401);

    // A running agent under its launcher, trusting the release key.
    let gw = "gw-rel-1";
    let creds = shim.add_gateway(gw);
    let data = tmp.join("agent-data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let o = Command::new(bin_path("scs-agent"))
        .arg("provision")
        .arg(&creds.bundle)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("provision");
    assert!(o.status.success(), "provision: {}", String::from_utf8_lossy(&o.stderr));
    let config = tmp.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nbroker = \"{}\"\n\n[update]\nrelease_key = \"{}\"\nhealth_timeout_secs = 30\n",
            shim.mqtt_url(),
            public.display()
        ),
    )
    .expect("write config");
    let agent = Supervised::start(tmp.path(), &data, gw, &config);
    let output = || std::fs::read_to_string(tmp.join("agent.out")).unwrap_or_default();
    wait_for(T, "the gateway's arch in its inventory", || gateway_attrs(&shim, gw)["arch"].as_str().map(str::to_owned));
    assert_eq!(gateway_attrs(&shim, gw)["agentVersion"], env!("CARGO_PKG_VERSION"));

    let offer = |gateway: &str, v: &str, body: Value| api.post_json(&format!("/v1/gateways/{gateway}/releases/{v}/offer"), &body);
    // Scopes: reading the catalogue needs `read`; offering needs `admin` (agent.update is destructive).
    let token_of = |name: &str, scope: &str| {
        let o = Command::new(bin_path("scs-cloud-shim"))
            .args(["tokens", "add", name, "--scope", scope, "--data-dir"])
            .arg(shim.data_dir())
            .output()
            .expect("tokens add");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8").trim().to_owned()
    };
    let reader = api.with_token(Some(&token_of("dash", "read")));
    assert_eq!(reader.get("/v1/releases").status, 200);
    let operator = api.with_token(Some(&token_of("ops", "operate")));
    let r = operator.post_json(&format!("/v1/gateways/{gw}/releases/{version}/offer"), &json!({"confirm": true}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["requiredScope"], "admin");
    // Refusals: unknown gateway, unknown version, no confirmation, a build for another arch.
    let r = offer("gw-nobody", &version, json!({"confirm": true}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = offer(gw, "0.0.0-none", json!({"confirm": true}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = offer(gw, &version, json!({}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "confirm");
    let r = offer(gw, "9.9.9", json!({"confirm": true}));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["gatewayArch"], std::env::consts::ARCH);
    assert_eq!(r.json()["targets"], json!([foreign]));

    let r = offer(gw, &version, json!({"confirm": true}));
    assert_eq!(r.status, 201, "{}", r.text());
    let command = r.json();
    assert_eq!(command["type"], "agent.update");
    assert_eq!(command["release"]["id"], ours["id"]);
    let url = command["params"]["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("{}/v1/releases/rel-", shim.http_url())) && url.contains("?token=v1~d~"), "{url}");

    // The tokenized URL: no API token needed, Range honoured, bound to its release.
    let path = url.strip_prefix(&shim.http_url()).expect("same origin").to_owned();
    let anon = api.with_token(None);
    let r = anon.request_with("GET", &path, &[("Range", "bytes=100-199")], None);
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body, std::fs::read(&update_file).expect("read")[100..200].to_vec());
    assert_eq!(r.header("content-range"), Some(format!("bytes 100-199/{}", ours["size"]).as_str()));
    let (base, token) = path.split_once("?token=").expect("token");
    assert_eq!(anon.get(base).status, 403, "no token");
    let other = base.replace(ours["id"].as_str().expect("id"), "rel-00000000000000000000");
    assert_eq!(anon.get(&format!("{other}?token={token}")).status, 403, "a token for another release");

    // The agent downloads, verifies, installs, restarts into the new binary and confirms it.
    let id = command["id"].as_str().expect("id").to_owned();
    let mut last = Value::Null;
    let done = scs_testkit::wait_until(Duration::from_secs(180), || {
        last = api.get_json(&format!("/v1/commands/{id}"));
        last["terminal"] == true
    });
    assert!(done, "command {id} did not finish: {last}\n{}", output());
    assert_eq!(last["state"], "succeeded", "{last}\n{}", output());
    assert_eq!(last["result"]["version"], version.as_str());
    assert_eq!(
        std::fs::read_link(data.join("bin/current")).expect("current"),
        data.join("bin").join(format!("scs-agent-{version}"))
    );
    wait_for(T, "the new version in the gateway's inventory", || {
        (gateway_attrs(&shim, gw)["agentVersion"] == version.as_str()).then_some(())
    });
    let list = api.get_json("/v1/releases");
    let offered = list["releases"].as_array().expect("releases").iter().find(|r| r["id"] == ours["id"]).cloned();
    assert_eq!(offered.expect("listed")["offers"], 1);
    assert!(agent.starts.load(std::sync::atomic::Ordering::SeqCst) >= 3, "launched, trial, confirmed");
}
