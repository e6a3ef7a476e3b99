//! `agent.update` and `image.install` end to end: the real agent, started through the real
//! `packaging/scs-agent-launch` by a restart loop (what systemd's `Restart=always` and the BusyBox
//! supervisor do), the real shim (embedded broker, command API), and the update served over real HTTP
//! on 127.0.0.1 by a small file server that honours `Range` and can cut a response short.
//!
//! "New versions" are small shell scripts, so each case is cheap: a healthy one execs the real agent
//! binary, an unhealthy one execs it pointed at a closed broker port (it never connects, so its health
//! check times out), a broken one exits at once. RAUC is a stand-in script behaving like its CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::signature::{Ed25519KeyPair, KeyPair};
use scs_testkit::{bin_path, wait_until, Shim, ShimOpts, Supervised, TempDir};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = c.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)) << (8 * (3 - c.len()));
        for i in 0..=c.len() {
            s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn keypair() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// The message the release key signs (the same text `scripts/build-release` signs with openssl).
fn signed_message(version: &str, size: usize, sha256: &str) -> String {
    format!("scs-agent-update\nversion={version}\nsize={size}\nsha256={sha256}\n")
}

type Files = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Serves `files` (path → bytes) over HTTP/1.1, one request per connection, with `Range: bytes=N-`.
/// While `cut` is set, a full response is cut after half its body (the connection drops).
struct FileServer {
    port: u16,
    files: Files,
    requests: Arc<AtomicU64>,
    ranged: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    /// Pause per 4 KiB sent, in ms (to kill the agent mid-download).
    slow_ms: Arc<AtomicU64>,
}

impl FileServer {
    fn start() -> FileServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let s = FileServer {
            port,
            files: Arc::default(),
            requests: Arc::default(),
            ranged: Arc::default(),
            cut: Arc::default(),
            slow_ms: Arc::default(),
        };
        let (files, requests, ranged, cut, slow) =
            (s.files.clone(), s.requests.clone(), s.ranged.clone(), s.cut.clone(), s.slow_ms.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let files = files.clone();
                let (requests, ranged, cut, slow) = (requests.clone(), ranged.clone(), cut.clone(), slow.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut from = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    let body = files.lock().unwrap().iter().find(|(p, _)| *p == path).map(|(_, b)| b.clone());
                    let Some(body) = body else {
                        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    };
                    let part = &body[from.min(body.len())..];
                    let head = if from > 0 {
                        ranged.fetch_add(1, Ordering::SeqCst);
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                            part.len(),
                            body.len() - 1,
                            body.len()
                        )
                    } else {
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", part.len())
                    };
                    let _ = conn.write_all(head.as_bytes());
                    let send = if cut.swap(false, Ordering::SeqCst) { &part[..part.len() / 2] } else { part };
                    for c in send.chunks(4096) {
                        if conn.write_all(c).is_err() {
                            return;
                        }
                        let ms = slow.load(Ordering::SeqCst);
                        if ms > 0 {
                            std::thread::sleep(Duration::from_millis(ms));
                        }
                    }
                    let _ = conn.flush();
                });
            }
        });
        s
    }

    fn put(&self, path: &str, data: Vec<u8>) -> String {
        self.files.lock().unwrap().push((path.to_string(), data));
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Site {
    shim: Shim,
    files: FileServer,
    key: Ed25519KeyPair,
    dir: TempDir,
    data: PathBuf,
    gw: String,
    agent: Supervised,
}

impl Site {
    fn start(gw: &str, extra_toml: &str) -> Site {
        let shim = Shim::start(ShimOpts::default());
        let dir = TempDir::new("update");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let key = keypair();
        let pubfile = dir.join("release-key.pub");
        std::fs::write(&pubfile, b64(key.public_key().as_ref()) + "\n").unwrap();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[mqtt]\nbroker = \"{}\"\n\n[update]\nrelease_key = \"{}\"\nhealth_timeout_secs = 8\n{extra_toml}",
                shim.mqtt_url(),
                pubfile.display()
            ),
        )
        .unwrap();
        // The shim's broker admits provisioned gateways only.
        let creds = shim.add_gateway(gw);
        let o = Command::new(bin_path("scs-agent"))
            .arg("provision")
            .arg(&creds.bundle)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(o.status.success(), "provision: {}", String::from_utf8_lossy(&o.stderr));
        let agent = Supervised::start(dir.path(), &data, gw, &config);
        let site = Site { shim, files: FileServer::start(), key, dir, data, gw: gw.into(), agent };
        let api = site.shim.api();
        assert!(wait_until(T, || api.get_json("/v1/sensors").to_string().contains(gw)), "gateway {gw} never reported");
        site
    }

    /// An update offer for `script` signed by `key` (default: the release key).
    fn offer(&self, version: &str, script: &str, key: Option<&Ed25519KeyPair>) -> Value {
        let body = script.as_bytes().to_vec();
        let sha = sha256_hex(&body);
        let sig = key.unwrap_or(&self.key).sign(signed_message(version, body.len(), &sha).as_bytes());
        let url = self.files.put(&format!("/releases/scs-agent-{version}"), body.clone());
        json!({"version": version, "url": url, "size": body.len(), "sha256": sha, "signature": b64(sig.as_ref())})
    }

    fn send(&self, ty: &str, params: Value) -> String {
        let r = self
            .shim
            .api()
            .post_json(&format!("/v1/gateways/{}/commands", self.gw), &json!({"type": ty, "params": params, "confirm": true}));
        assert!(r.is_success(), "create {ty}: {} {}", r.status, r.text());
        r.json()["id"].as_str().unwrap().to_string()
    }

    fn wait_terminal(&self, id: &str) -> Value {
        let api = self.shim.api();
        let mut last = Value::Null;
        let done = wait_until(T, || {
            last = api.get_json(&format!("/v1/commands/{id}"));
            last["terminal"].as_bool() == Some(true)
        });
        assert!(done, "command {id} did not finish: {last}\nagent output:\n{}", self.output());
        last
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.out")).unwrap_or_default()
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.data.join("bin").join(name)
    }

    /// The agent works: a command round trip succeeds.
    fn assert_working(&self) {
        let id = self.send("device.info", json!({}));
        let c = self.wait_terminal(&id);
        assert_eq!(c["state"], "succeeded", "device.info after the update: {c}\n{}", self.output());
    }

    fn healthy_script() -> String {
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", bin_path("scs-agent").display())
    }
}

/// An offer made the release way: `scripts/build-release --gen-test-key` and `--sign-update` (OpenSSL),
/// the agent then trusting that public key. `None` when openssl is not installed.
fn offer_from_build_release(site: &Site, version: &str, script: &str) -> Option<Value> {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: signing in the test instead of with scripts/build-release");
        return None;
    }
    let dir = site.dir.join("release");
    let tool = workspace().join("scripts/build-release");
    assert!(Command::new(&tool).arg("--gen-test-key").arg(&dir).status().unwrap().success());
    let bin = dir.join("scs-agent");
    std::fs::write(&bin, script).unwrap();
    let ok = Command::new(&tool)
        .env("SCS_RELEASE_KEY_FILE", dir.join("release-key.pem"))
        .env("SCS_UPDATE_TARGET", "test")
        .arg("--sign-update")
        .arg(&bin)
        .arg(version)
        .status()
        .unwrap();
    assert!(ok.success());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("scs-agent-{version}-test.update.json"))).unwrap()).unwrap();
    let body = std::fs::read(dir.join(manifest["file"].as_str().unwrap())).unwrap();
    std::fs::copy(dir.join("release-key.pub"), site.dir.join("release-key.pub")).unwrap();
    let url = site.files.put(&format!("/releases/{}", manifest["file"].as_str().unwrap()), body);
    Some(json!({"version": manifest["version"], "url": url, "size": manifest["size"], "sha256": manifest["sha256"],
        "signature": manifest["signature"]}))
}

#[test]
fn update_succeeds_resuming_a_cut_download() {
    let site = Site::start("gw-upd-ok", "");
    site.files.cut.store(true, Ordering::SeqCst);
    let offer = offer_from_build_release(&site, "2.0.0", &Site::healthy_script())
        .unwrap_or_else(|| site.offer("2.0.0", &Site::healthy_script(), None));
    let id = site.send("agent.update", offer);
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "succeeded", "{c}\n{}", site.output());
    assert_eq!(c["result"]["outcome"], "updated");
    assert_eq!(c["result"]["version"], "2.0.0");
    assert!(site.files.ranged.load(Ordering::SeqCst) >= 1, "the cut download was not resumed with Range");
    assert_eq!(std::fs::read_link(site.bin("current")).unwrap(), site.bin("scs-agent-2.0.0"));
    assert!(!site.bin("next").exists() && !site.bin("pending").exists());
    site.assert_working();
}

#[test]
fn bad_signature_is_refused_before_download_and_install() {
    let site = Site::start("gw-upd-badsig", "");
    let other = keypair();
    let offer = site.offer("2.0.1", &Site::healthy_script(), Some(&other));
    let id = site.send("agent.update", offer);
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "failed", "{c}");
    assert!(c["error"].as_str().unwrap().contains("signature"), "{c}");
    assert_eq!(site.files.requests.load(Ordering::SeqCst), 0, "nothing may be downloaded for a forged offer");
    assert!(!site.bin("next").exists() && !site.bin("scs-agent-2.0.1").exists());
    // A tampered binary under a genuine signature fails the hash check and is not installed either.
    let offer = site.offer("2.0.2", &Site::healthy_script(), None);
    site.files.files.lock().unwrap().last_mut().unwrap().1.extend_from_slice(b"# tampered\n");
    let id = site.send("agent.update", offer);
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "failed", "{c}");
    assert!(!site.bin("scs-agent-2.0.2").exists() && !site.bin("next").exists(), "{c}");
    site.assert_working();
}

#[test]
fn unhealthy_and_crashing_binaries_roll_back_by_themselves() {
    let site = Site::start("gw-upd-rollback", "");
    // Never connects: its own health check gives up after health_timeout_secs.
    let unhealthy = format!("#!/bin/sh\nexec '{}' \"$@\" --broker mqtt://127.0.0.1:9\n", bin_path("scs-agent").display());
    let id = site.send("agent.update", site.offer("3.0.0", &unhealthy, None));
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "failed", "{c}\n{}", site.output());
    assert_eq!(c["result"]["outcome"], "rolled_back", "{c}");
    assert!(c["result"]["reason"].as_str().unwrap().contains("not healthy within 8 s"), "{c}");
    assert!(!site.bin("current").exists() && !site.bin("next").exists());
    site.assert_working();

    let id = site.send("agent.update", site.offer("3.0.1", "#!/bin/sh\nexit 3\n", None));
    let c = site.wait_terminal(&id);
    assert_eq!(c["result"]["outcome"], "rolled_back", "{c}\n{}", site.output());
    assert!(c["result"]["reason"].as_str().unwrap().contains("before confirming"), "{c}");
    site.assert_working();
}

#[test]
fn kill_9_at_each_step_leaves_a_working_agent() {
    let site = Site::start("gw-upd-kill", "");
    // 1. During the download: the command is interrupted; the same offer sent again resumes.
    site.files.slow_ms.store(20, Ordering::SeqCst);
    let mut script = Site::healthy_script();
    script.push_str(&format!("# padding {}\n", "x".repeat(400_000)));
    let offer = site.offer("4.0.0", &script, None);
    let id = site.send("agent.update", offer.clone());
    let spool = site.data.join("spool");
    let partial =
        || {
            std::fs::read_dir(&spool).into_iter().flatten().flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".download") && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            })
        };
    assert!(wait_until(T, partial), "download never started");
    site.agent.kill9();
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "interrupted", "{c}");
    site.files.slow_ms.store(0, Ordering::SeqCst);
    // 2. Right after install (next staged): whichever process the kill hits, the update completes.
    let id = site.send("agent.update", offer);
    assert!(wait_until(T, || std::fs::symlink_metadata(site.bin("next")).is_ok() || site.bin("current").exists()));
    site.agent.kill9();
    let c = site.wait_terminal(&id);
    assert!(site.files.ranged.load(Ordering::SeqCst) >= 1, "the interrupted download was not resumed");
    assert!(matches!(c["state"].as_str(), Some("succeeded" | "interrupted")), "{c}\n{}", site.output());
    assert!(wait_until(T, || site.bin("current").exists()), "the new binary never became current");
    site.assert_working();
    // 3. After the restart into the new binary, before it confirms: abandoned, previous binary runs.
    let slow = format!("#!/bin/sh\nexec '{}' \"$@\" --broker mqtt://127.0.0.1:9\n", bin_path("scs-agent").display());
    let id = site.send("agent.update", site.offer("4.1.0", &slow, None));
    assert!(wait_until(T, || site.bin("next.tries").exists()), "the trial never started");
    std::thread::sleep(Duration::from_millis(500));
    site.agent.kill9();
    let c = site.wait_terminal(&id);
    assert_eq!(c["result"]["outcome"], "rolled_back", "{c}\n{}", site.output());
    assert_eq!(std::fs::read_link(site.bin("current")).unwrap(), site.bin("scs-agent-4.0.0"));
    site.assert_working();
    assert!(site.agent.starts.load(Ordering::SeqCst) >= 5);
}

#[test]
fn image_install_hands_the_bundle_to_rauc_and_reports_the_booted_slot() {
    let tools = TempDir::new("rauc");
    let state = tools.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Stand-in for the rauc CLI: `install` prints progress and records the bundle; `status` prints the
    // JSON status with the slot named in state/booted (what the bootloader chose).
    let rauc = tools.join("rauc");
    std::fs::write(
        &rauc,
        format!(
            r#"#!/bin/sh
S='{s}'
case "$1" in
install)
  [ -f "$2" ] || {{ echo "rauc: bundle $2 not found" >&2; exit 1; }}
  if grep -q BAD "$2"; then echo "  0% Installing"; echo "LastError: signature verification failed" >&2; exit 1; fi
  cp "$2" "$S/installed"
  echo "installing"; echo "  0% Installing"; echo " 40% Checking bundle"; echo " 80% Copying image to rootfs.1"; echo "100% Installing done."
  echo "Installing \`$2\` succeeded" ;;
status)
  b=$(cat "$S/booted" 2>/dev/null || echo rootfs.0)
  o=rootfs.0; [ "$b" = rootfs.0 ] && o=rootfs.1
  printf '{{"compatible":"scs","variant":null,"booted":"X","boot_primary":"%s","slots":[{{"%s":{{"state":"booted","boot_status":"good"}}}},{{"%s":{{"state":"inactive","boot_status":"good"}}}}]}}\n' "$b" "$b" "$o" ;;
*) exit 2 ;;
esac
"#,
            s = state.display()
        ),
    )
    .unwrap();
    let reboot = tools.join("reboot");
    std::fs::write(&reboot, format!("#!/bin/sh\necho rebooted >> '{}/reboots'\n", state.display())).unwrap();
    for f in [&rauc, &reboot] {
        Command::new("chmod").arg("755").arg(f).status().unwrap();
    }
    let boot_id = state.join("boot_id");
    std::fs::write(&boot_id, "boot-1\n").unwrap();
    let extra = format!(
        "image_tool = \"rauc\"\nrauc_command = \"{}\"\nboot_id_file = \"{}\"\n\n[commands]\nreboot_command = [\"{}\"]\n",
        rauc.display(),
        boot_id.display(),
        reboot.display()
    );
    let site = Site::start("gw-img", &extra);
    let bundle = b"bundle bytes".repeat(1000);
    let sha = sha256_hex(&bundle);
    let url = site.files.put("/bundles/update.raucb", bundle.clone());
    let id = site.send("image.install", json!({"url": url, "size": bundle.len(), "sha256": sha}));
    assert!(wait_until(T, || state.join("reboots").exists()), "no reboot after install\n{}", site.output());
    assert_eq!(std::fs::read(state.join("installed")).unwrap(), bundle);
    // Not rebooted yet (same boot id): still running after the agent restarts.
    std::thread::sleep(Duration::from_secs(2));
    let c = site.shim.api().get_json(&format!("/v1/commands/{id}"));
    assert_eq!(c["state"], "running", "{c}");
    // "Reboot": new boot id, RAUC booted the other slot, marked good.
    std::fs::write(&boot_id, "boot-2\n").unwrap();
    std::fs::write(state.join("booted"), "rootfs.1").unwrap();
    site.agent.kill9();
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "succeeded", "{c}\n{}", site.output());
    assert_eq!(c["result"]["bootedSlot"], "rootfs.1");
    assert_eq!(c["result"]["markedGood"], true);
    assert_eq!(c["result"]["previousSlot"], "rootfs.0");

    // A bundle RAUC refuses: failed with its error, nothing pending.
    let bad = b"BAD bundle".to_vec();
    let sha = sha256_hex(&bad);
    let url = site.files.put("/bundles/bad.raucb", bad.clone());
    let id = site.send("image.install", json!({"url": url, "size": bad.len(), "sha256": sha}));
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "failed", "{c}");
    assert!(c["error"].as_str().unwrap().contains("signature verification failed"), "{c}");
}

#[test]
fn image_install_hands_the_bundle_to_swupdate_and_reads_ustate_after_reboot() {
    let tools = TempDir::new("swupdate");
    let state = tools.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Stand-ins: `swupdate -i FILE` prints progress like the CLI and exits 0 (1 for a bundle it refuses);
    // `fw_printenv -n ustate` prints the bootloader's update state from a file.
    let swupdate = tools.join("swupdate");
    std::fs::write(
        &swupdate,
        format!(
            "#!/bin/sh\n[ \"$1\" = -i ] || exit 2\ncp \"$2\" '{s}/installed'\necho '[INFO ] : SWUPDATE running'\necho ' 50% Installing image'\necho '100% Installing image'\necho '[INFO ] : SWUPDATE successful !'\necho 1 > '{s}/ustate'\n",
            s = state.display()
        ),
    )
    .unwrap();
    let printenv = tools.join("fw_printenv");
    std::fs::write(&printenv, format!("#!/bin/sh\ncat '{}/ustate'\n", state.display())).unwrap();
    for f in [&swupdate, &printenv] {
        Command::new("chmod").arg("755").arg(f).status().unwrap();
    }
    let boot_id = state.join("boot_id");
    std::fs::write(&boot_id, "boot-1\n").unwrap();
    let extra = format!(
        "image_tool = \"swupdate\"\nswupdate_command = \"{}\"\nswupdate_state_command = [\"{}\", \"-n\", \"ustate\"]\nboot_id_file = \"{}\"\n",
        swupdate.display(),
        printenv.display(),
        boot_id.display()
    );
    let site = Site::start("gw-swu", &extra);
    let bundle = b"swu bytes".repeat(500);
    let sha = sha256_hex(&bundle);
    let url = site.files.put("/bundles/update.swu", bundle.clone());
    let id = site.send("image.install", json!({"url": url, "size": bundle.len(), "sha256": sha, "reboot": false}));
    assert!(wait_until(T, || state.join("installed").exists()), "swupdate never ran\n{}", site.output());
    assert_eq!(std::fs::read(state.join("installed")).unwrap(), bundle);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(site.shim.api().get_json(&format!("/v1/commands/{id}"))["state"], "running");
    // After the reboot the new image's boot check cleared ustate to 0 (marked good).
    std::fs::write(&boot_id, "boot-2\n").unwrap();
    std::fs::write(state.join("ustate"), "0\n").unwrap();
    site.agent.kill9();
    let c = site.wait_terminal(&id);
    assert_eq!(c["state"], "succeeded", "{c}\n{}", site.output());
    assert_eq!(c["result"]["tool"], "swupdate");
    assert_eq!(c["result"]["markedGood"], true);
}
