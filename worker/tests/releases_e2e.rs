//! Releases on the Worker end to end with real processes: workerd (`scripts/worker-dev`) with its local
//! R2 bucket, D1 and Durable Objects, Mosquitto, a shim bridging them with `--worker-url`, and a real
//! agent under `packaging/scs-agent-launch`. A release signed by `scripts/build-release` is uploaded to
//! the Worker (a forged signature and changed bytes are refused, nothing stored; the same build again is
//! accepted, other bytes under its version are 409; the upload is `scs-cloud-shim releases add
//! --worker-url`), listed, offered to the bridged gateway through its
//! Durable Object, downloaded over the tokenized URL with Range, and installed by the agent, which
//! restarts into it and reports the new version.

mod common;
mod support;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use scs_testkit::releases::{agent_with_version, build_release, other_version, sign, target_triple};
use scs_testkit::{bin_path, wait_for, wait_until, Reply, Supervised, TempDir};
use serde_json::{json, Value as Json};
use support::Site;

const T: Duration = Duration::from_secs(120);

/// The artifact token key and the release public key every Worker of this test process gets
/// (scripts/worker-dev puts them in .dev.vars); set before the first Worker starts.
fn keys(public: &Path) {
    static SET: OnceLock<()> = OnceLock::new();
    let text = std::fs::read_to_string(public).unwrap();
    SET.get_or_init(|| {
        // SAFETY: set once, before any Worker is spawned.
        unsafe {
            std::env::set_var("SCS_SIGNING_KEY", "artifact-key-of-the-release-tests-0123456789");
            std::env::set_var("RELEASE_PUBLIC_KEY", text.trim());
        }
    });
}

/// `POST /v1/releases` of the update next to `manifest`, with the manifest (compact) in its header.
fn upload(site: &Site, manifest: &Path, body: Option<&[u8]>) -> Reply {
    let m: Json = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let bytes = match body {
        Some(b) => b.to_vec(),
        None => std::fs::read(manifest.with_extension("")).unwrap(),
    };
    let compact = m.to_string();
    site.worker.api().request_with(
        "POST",
        "/v1/releases",
        &[("Release-Manifest", &compact)],
        Some(("application/octet-stream", &bytes)),
    )
}

fn sensor_attrs(site: &Site) -> Json {
    let r = site.worker.api().get(&format!("/v1/sensors/{}", site.gw));
    if r.status != 200 {
        return Json::Null;
    }
    r.json()["attrs"].clone()
}

#[test]
fn a_release_uploaded_to_the_worker_is_offered_downloaded_and_installed_by_the_agent() {
    if common::require_tools().is_none() {
        return;
    }
    let tmp = TempDir::new("worker-releases");
    let keys_dir = tmp.join("keys");
    build_release(&["--gen-test-key", keys_dir.to_str().unwrap()], &[]);
    let (pem, public) = (keys_dir.join("release-key.pem"), keys_dir.join("release-key.pub"));
    keys(&public);

    let version = other_version(env!("CARGO_PKG_VERSION"));
    let build = tmp.join("build");
    std::fs::create_dir_all(&build).unwrap();
    let binary = agent_with_version(&build, &version);
    let triple = target_triple();
    let manifest = sign(&binary, &version, &triple, &pem);
    let update = std::fs::read(manifest.with_extension("")).unwrap();

    let site = Site::start("gw-wrel", 1);
    let api = site.worker.api();

    // Refused: a signature by another key, bytes that are not the signed ones, no API token. Nothing stored.
    let forger = tmp.join("forger");
    build_release(&["--gen-test-key", forger.to_str().unwrap()], &[]);
    let forged_dir = tmp.join("forged");
    std::fs::create_dir_all(&forged_dir).unwrap();
    std::fs::copy(&binary, forged_dir.join("scs-agent")).unwrap();
    let forged = sign(&forged_dir.join("scs-agent"), &version, &triple, &forger.join("release-key.pem"));
    let r = upload(&site, &forged, None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("does not verify"), "{}", r.text());
    let mut changed = update.clone();
    changed[1000] ^= 0xff;
    let r = upload(&site, &manifest, Some(&changed));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("signed one"), "{}", r.text());
    let anon = api.with_token(None);
    let r = anon.request_with("POST", "/v1/releases", &[], Some(("application/octet-stream", b"x")));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(api.get_json("/v1/releases")["releases"], json!([]), "refused uploads stored nothing");

    // Accepted once; the same build again answers with the stored row; other bytes under its version: 409.
    // The genuine one through the shim's CLI (`releases add FILE --worker-url`), then again over HTTP.
    let o = std::process::Command::new(bin_path("scs-cloud-shim"))
        .args(["releases", "add"])
        .arg(manifest.with_extension(""))
        .args(["--worker-url", &site.worker.url()])
        .env("SCS_WORKER_TOKEN", scs_testkit::TEST_TOKEN)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && said.contains(" stored at "), "releases add --worker-url: {said}\n{}", site.logs());
    let list = api.get_json("/v1/releases");
    let ours = list["releases"][0].clone();
    assert!(said.contains(ours["id"].as_str().unwrap_or("?")), "{said} / {list}");
    assert_eq!((ours["version"].as_str(), ours["target"].as_str()), (Some(version.as_str()), Some(triple.as_str())));
    let r = upload(&site, &manifest, None);
    assert_eq!((r.status, &r.json()["id"]), (200, &ours["id"]), "{}", r.text());
    let other_dir = tmp.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let mut other_bytes = std::fs::read(&binary).unwrap();
    other_bytes.extend_from_slice(b"other build");
    std::fs::write(other_dir.join("scs-agent"), &other_bytes).unwrap();
    let r = upload(&site, &sign(&other_dir.join("scs-agent"), &version, &triple, &pem), None);
    assert_eq!(r.status, 409, "{}", r.text());
    // A build for an arch no gateway here has, to see the offer refuse it.
    let foreign = if std::env::consts::ARCH == "aarch64" { "armv7-unknown-linux-gnueabihf" } else { "aarch64-unknown-linux-gnu" };
    let r = upload(&site, &sign(&other_dir.join("scs-agent"), "9.9.9", foreign, &pem), None);
    assert_eq!(r.status, 201, "{}", r.text());

    let list = api.get_json("/v1/releases");
    let listed = list["releases"].as_array().unwrap().iter().find(|r| r["id"] == ours["id"]).cloned();
    let listed = listed.unwrap_or_else(|| panic!("release not listed: {list}"));
    assert_eq!(listed["arch"], std::env::consts::ARCH);
    assert_eq!(listed["size"], update.len() as u64);
    assert_eq!(listed["offers"], 0);
    assert_eq!(anon.get("/v1/releases").status, 401);

    // The gateway's agent under its launcher, trusting the release key, bridged by the shim.
    let gw = site.gw.clone();
    let data = tmp.join("agent-data");
    std::fs::create_dir_all(&data).unwrap();
    let o = std::process::Command::new(bin_path("scs-agent"))
        .arg("provision")
        .arg(&site.creds.bundle)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "provision: {}", String::from_utf8_lossy(&o.stderr));
    let config = tmp.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nbroker = \"{}\"\n\n[update]\nrelease_key = \"{}\"\nhealth_timeout_secs = 30\n",
            site.broker.url(),
            public.display()
        ),
    )
    .unwrap();
    let agent = Supervised::start(tmp.path(), &data, &gw, &config);
    let output = || std::fs::read_to_string(tmp.join("agent.out")).unwrap_or_default();
    wait_for(T, "the gateway's arch in the Worker's inventory", || sensor_attrs(&site)["arch"].as_str().map(str::to_owned));

    let offer = |v: &str, gateway: &str, body: Json| api.post_json(&format!("/v1/gateways/{gateway}/releases/{v}/offer"), &body);
    let r = offer(&version, "gw-nobody", json!({"confirm": true}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = offer("0.0.0-none", &gw, json!({"confirm": true}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = offer(&version, &gw, json!({}));
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("confirm")), "{}", r.text());
    let r = offer("9.9.9", &gw, json!({"confirm": true}));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["gatewayArch"], std::env::consts::ARCH);
    assert_eq!(r.json()["targets"], json!([foreign]));

    let r = offer(&version, &gw, json!({"confirm": true}));
    assert_eq!(r.status, 201, "{}\n{}", r.text(), site.logs());
    let command = r.json();
    assert_eq!(command["type"], "agent.update");
    assert_eq!(command["release"]["id"], ours["id"]);
    let url = command["params"]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/v1/releases/rel-", site.worker.url())) && url.contains("?token=v1~d~"), "{url}");

    // The tokenized URL, from R2: no API token, Range honoured, bound to its release.
    let path = url.strip_prefix(&site.worker.url()).unwrap().to_owned();
    let r = anon.request_with("GET", &path, &[("Range", "bytes=100-199")], None);
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body, update[100..200].to_vec());
    assert_eq!(r.header("content-range"), Some(format!("bytes 100-199/{}", update.len()).as_str()));
    let (base, token) = path.split_once("?token=").unwrap();
    assert_eq!(anon.get(base).status, 403, "no token");
    let other = base.replace(ours["id"].as_str().unwrap(), "rel-00000000000000000000");
    assert_eq!(anon.get(&format!("{other}?token={token}")).status, 403, "a token for another release");

    // The agent downloads from the Worker, verifies, installs, restarts into it and confirms it.
    let id = command["id"].as_str().unwrap().to_owned();
    let mut last = Json::Null;
    let done = wait_until(Duration::from_secs(240), || {
        last = api.get_json(&format!("/v1/commands/{id}"));
        last["terminal"] == true
    });
    assert!(done, "command {id} did not finish: {last}\n{}\n{}", output(), site.logs());
    assert_eq!(last["state"], "succeeded", "{last}\n{}", output());
    assert_eq!(last["result"]["version"], version.as_str());
    assert_eq!(std::fs::read_link(data.join("bin/current")).unwrap(), data.join("bin").join(format!("scs-agent-{version}")));
    wait_for(T, "the new version in the Worker's inventory", || {
        (sensor_attrs(&site)["agentVersion"] == version.as_str()).then_some(())
    });
    let list = api.get_json("/v1/releases");
    let offered = list["releases"].as_array().unwrap().iter().find(|r| r["id"] == ours["id"]).cloned();
    assert_eq!(offered.unwrap()["offers"], 1);
    assert!(agent.starts.load(std::sync::atomic::Ordering::SeqCst) >= 3, "launched, trial, confirmed");
}
