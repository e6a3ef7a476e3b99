//! `scs-cloud-shim releases add|list`: works on the data dir directly, also while `serve` runs on it.

use std::io::Read;
use std::path::{Path, PathBuf};

use ring::digest;
use serde::Deserialize;
use thiserror::Error;

use super::store::{self, ReleaseRow};
use super::{read_public_key, verify_signature, ReleaseError, RELEASE_KEY_FILE};
use crate::identity::cli::{Args, CliError};
use crate::objects::{FsObjectStore, ObjectKey, ObjectStore};
use crate::store::{now_ms, Store};

pub const USAGE: &str = "\
    scs-cloud-shim releases add FILE --data-dir DIR [--release-key KEY]
        store a signed agent update from `scripts/build-release --release-key` (FILE: the
        scs-agent-VERSION-TARGET.update binary or its .update.json manifest). Refused unless size,
        SHA-256 and the Ed25519 signature check out with the release public key KEY (32 bytes, base64;
        default DIR/release-key.pub). Offer it with POST /v1/gateways/{id}/releases/{version}/offer.
    scs-cloud-shim releases add FILE --worker-url URL [--worker-ca FILE]
        upload it to the Worker's catalogue instead (POST URL/v1/releases, which checks the same way
        with its RELEASE_PUBLIC_KEY); token from SCS_WORKER_TOKEN, else SCS_API_TOKEN (admin scope).
    scs-cloud-shim releases list --data-dir DIR
";

#[derive(Debug, Error)]
pub enum ReleasesCliError {
    #[error(transparent)]
    Args(#[from] CliError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// Largest release, as the registry bounds `agent.update`'s `size`.
const MAX_RELEASE_BYTES: u64 = 1 << 30;

/// The manifest `scripts/build-release` writes beside each signed update (`.update.json`).
#[derive(Debug, Deserialize)]
struct Manifest {
    version: String,
    target: String,
    file: String,
    size: u64,
    sha256: String,
    signature: String,
}

/// `releases ...`; prints what it did on stdout.
pub fn releases(args: &[String]) -> Result<(), ReleasesCliError> {
    let a = Args::parse(args)?;
    match a.positional.first().map(String::as_str) {
        Some("add") if a.get("worker-url").is_some() => {
            a.only(&["worker-url", "worker-ca"])?;
            let [_, file] = a.positional.as_slice() else {
                return Err(ReleasesCliError::Usage("releases add needs one FILE (the .update or its .update.json)".into()));
            };
            let url = a.require("worker-url")?;
            // The same token the shim's other Worker options send.
            let token = ["SCS_WORKER_TOKEN", "SCS_API_TOKEN"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|t| !t.is_empty()))
                .ok_or_else(|| ReleasesCliError::Usage("set SCS_WORKER_TOKEN (or SCS_API_TOKEN) to an admin token".into()))?;
            let v = add_to_worker(url, Path::new(file), &token, a.get("worker-ca").map(Path::new))?;
            let what = if v["created"] == true { "stored" } else { "already stored (same bytes)" };
            let f = |k: &str| v[k].as_str().map_or_else(|| v[k].to_string(), str::to_owned);
            println!(
                "release {} {} {} {what} at {url}: {} bytes, sha256 {}",
                f("id"),
                f("version"),
                f("target"),
                f("size"),
                f("sha256")
            );
            Ok(())
        }
        Some("add") => {
            a.only(&["data-dir", "release-key"])?;
            let [_, file] = a.positional.as_slice() else {
                return Err(ReleasesCliError::Usage("releases add needs one FILE (the .update or its .update.json)".into()));
            };
            let data_dir = a.data_dir()?;
            let key = a.get("release-key").map_or_else(|| data_dir.join(RELEASE_KEY_FILE), PathBuf::from);
            let (row, new) = add(&data_dir, Path::new(file), &key)?;
            let what = if new { "stored" } else { "already stored (same bytes)" };
            println!("release {} {} {} {what}: {} bytes, sha256 {}", row.id, row.version, row.target, row.size, row.sha256);
            Ok(())
        }
        Some("list") => {
            a.only(&["data-dir"])?;
            let store = Store::open(&a.data_dir()?).map_err(ReleaseError::from)?;
            let conn = store.connect().map_err(ReleaseError::from)?;
            println!("id\tversion\ttarget\tsize\tsha256\tcreated_ms\toffers");
            for (r, offers) in store::list(&conn).map_err(ReleaseError::from)? {
                println!("{}\t{}\t{}\t{}\t{}\t{}\t{offers}", r.id, r.version, r.target, r.size, r.sha256, r.created_ms);
            }
            Ok(())
        }
        _ => Err(ReleasesCliError::Usage("releases add|list (see scs-cloud-shim help)".into())),
    }
}

/// Where the manifest and the binary of a signed update are, given either of them.
fn locate(file: &Path) -> Result<(PathBuf, Manifest, PathBuf), ReleaseError> {
    let manifest_path = if file.extension().is_some_and(|e| e == "json") {
        file.to_owned()
    } else {
        let mut p = file.as_os_str().to_owned();
        p.push(".json");
        PathBuf::from(p)
    };
    let bad = |reason: String| ReleaseError::Manifest { path: manifest_path.clone(), reason };
    let text = std::fs::read(&manifest_path).map_err(|source| ReleaseError::Io { path: manifest_path.clone(), source })?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    // The manifest names a file beside it, never a path elsewhere.
    if m.file.is_empty() || m.file.contains('/') || m.file.starts_with('.') {
        return Err(bad(format!("file {:?} is not a plain file name", m.file)));
    }
    let binary = manifest_path.parent().unwrap_or(Path::new(".")).join(&m.file);
    Ok((manifest_path, m, binary))
}

/// Uploads one signed update to a Worker's `POST /v1/releases` (the body as it is, the manifest in the
/// `Release-Manifest` header); the Worker checks size, hash and signature before it stores anything.
/// Its answer: the release's JSON.
pub fn add_to_worker(base: &str, file: &Path, token: &str, ca: Option<&Path>) -> Result<serde_json::Value, ReleaseError> {
    use crate::ingest::worker::{http_agent, WorkerError};
    let (manifest_path, _, binary) = locate(file)?;
    let text = std::fs::read(&manifest_path).map_err(|source| ReleaseError::Io { path: manifest_path.clone(), source })?;
    let manifest: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| ReleaseError::Manifest { path: manifest_path.clone(), reason: e.to_string() })?;
    let bytes = std::fs::read(&binary).map_err(|source| ReleaseError::Io { path: binary.clone(), source })?;
    let url = format!("{}/v1/releases", base.trim_end_matches('/'));
    let agent = http_agent(ca, std::time::Duration::from_secs(600))?;
    let mut resp = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Release-Manifest", &manifest.to_string())
        .header("Content-Type", "application/octet-stream")
        .send(&bytes[..])
        .map_err(|source| WorkerError::Transport { url: url.clone(), source })?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|source| WorkerError::Transport { url: url.clone(), source })?;
    if status != 200 && status != 201 {
        let body = String::from_utf8_lossy(&body).chars().take(500).collect();
        return Err(WorkerError::Status { url, status, body }.into());
    }
    Ok(serde_json::from_slice(&body).map_err(|source| WorkerError::AnswerJson { url, source })?)
}

fn sha256_and_size(path: &Path) -> Result<(String, u64), ReleaseError> {
    let io = |source| ReleaseError::Io { path: path.to_owned(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
        ctx.update(chunk);
        size += n as u64;
    }
    Ok((crate::access::hex(ctx.finish().as_ref()), size))
}

/// Checks and stores one signed update; `(row, true)` when it is new, `(existing, false)` when the same
/// bytes were stored before. Nothing is stored unless every check passed.
pub fn add(data_dir: &Path, file: &Path, key_path: &Path) -> Result<(ReleaseRow, bool), ReleaseError> {
    let (manifest_path, m, binary) = locate(file)?;
    let refused = |reason: String| ReleaseError::Refused { version: m.version.clone(), target: m.target.clone(), reason };
    scs_protocol::ids::validate_id("release version", &m.version).map_err(|e| refused(e.to_string()))?;
    scs_protocol::ids::validate_id("target triple", &m.target).map_err(|e| refused(e.to_string()))?;
    let sha256 = m.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused(format!("sha256 {:?} in {} is not 64 hex digits", m.sha256, manifest_path.display())));
    }
    // The bounds of agent.update's `size` parameter: a release outside them could never be offered.
    if !(1..=MAX_RELEASE_BYTES).contains(&m.size) {
        return Err(refused(format!("size {} is outside 1..={MAX_RELEASE_BYTES} bytes", m.size)));
    }
    let key = read_public_key(key_path)?;
    verify_signature(&key, &m.version, m.size, &sha256, &m.signature).map_err(refused)?;
    let (actual_sha, actual_size) = sha256_and_size(&binary)?;
    if actual_size != m.size {
        return Err(refused(format!("{} has {actual_size} bytes, the signed size is {}", binary.display(), m.size)));
    }
    if actual_sha != sha256 {
        return Err(refused(format!("{} has sha256 {actual_sha}, the signed one is {sha256}", binary.display())));
    }

    let store = Store::open(data_dir)?;
    let conn = store.connect()?;
    let same_or_conflict = |existing: ReleaseRow| {
        if existing.sha256 == sha256 {
            Ok((existing, false))
        } else {
            Err(ReleaseError::Conflict { version: m.version.clone(), target: m.target.clone(), existing: existing.sha256 })
        }
    };
    if let Some(existing) = store::by_version_target(&conn, &m.version, &m.target)? {
        return same_or_conflict(existing);
    }
    let id = format!("rel-{}", crate::random::random_hex(10));
    let object = ObjectKey::for_release(&id).map_err(|source| ReleaseError::Objects { id: id.clone(), source })?;
    // Bytes first, then the row: a crash in between leaves an unreferenced object, never a row without bytes.
    write_object(data_dir, &object, &binary, m.size, &sha256)
        .map_err(|source| ReleaseError::Objects { id: id.clone(), source })?;
    let row = ReleaseRow {
        id: id.clone(),
        version: m.version.clone(),
        target: m.target.clone(),
        size: m.size,
        sha256: sha256.clone(),
        signature: m.signature.trim().to_owned(),
        file_name: m.file.clone(),
        object_key: object.as_str().to_owned(),
        created_ms: now_ms(),
    };
    match store::insert(&conn, &row)? {
        None => Ok((row, true)),
        Some(existing) => {
            // Another `releases add` of the same version and target won the race.
            remove_object(data_dir, &object);
            same_or_conflict(existing)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, crate::objects::ObjectError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| crate::objects::ObjectError::Io { key: "runtime".into(), source })
}

/// Copies `binary` into the object store as the finalized object `key`; the bytes copied must be the
/// checked ones (a file replaced after the checks is refused, and its staged copy deleted).
fn write_object(
    data_dir: &Path,
    key: &ObjectKey,
    binary: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), crate::objects::ObjectError> {
    let io = |source| crate::objects::ObjectError::Io { key: key.as_str().to_owned(), source };
    let objects = FsObjectStore::open(data_dir)?;
    let rt = runtime()?;
    let written = rt.block_on(async {
        objects.stage(key).await?;
        let mut w = objects.begin_append(key, 0).await?;
        let mut f = std::fs::File::open(binary).map_err(io)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut ctx = digest::Context::new(&digest::SHA256);
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
            ctx.update(chunk);
            w.write(chunk).await?;
        }
        let len = w.commit().await?;
        let copied = crate::access::hex(ctx.finish().as_ref());
        if len != size || copied != sha256 {
            return Err(io(std::io::Error::other(format!(
                "copied {len} bytes with sha256 {copied}, checked {size} bytes with {sha256} (the file changed)"
            ))));
        }
        objects.finalize(key).await
    });
    if written.is_err() {
        // Nothing half-written stays behind a refused or failed add.
        let _ = rt.block_on(objects.delete(key));
    }
    written
}

fn remove_object(data_dir: &Path, key: &ObjectKey) {
    let removed = FsObjectStore::open(data_dir).and_then(|o| runtime()?.block_on(o.delete(key)));
    if let Err(e) = removed {
        log::warn!("release object {}: not removed: {e}", key.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use crate::store::test_support::TestDir;

    /// Writes `bytes` as a signed update of `version` for `target` (as `build-release --sign-update` does).
    fn signed(dir: &Path, key: &Ed25519KeyPair, version: &str, target: &str, bytes: &[u8]) -> PathBuf {
        let name = format!("scs-agent-{version}-{target}.update");
        std::fs::write(dir.join(&name), bytes).unwrap();
        let sha = crate::access::hex(digest::digest(&digest::SHA256, bytes).as_ref());
        let msg = scs_protocol::command::agent_update_signed_message(version, bytes.len() as u64, &sha);
        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(msg.as_bytes()));
        let manifest = serde_json::json!({"version": version, "target": target, "file": name, "size": bytes.len(),
            "sha256": sha, "signature": sig});
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, manifest.to_string()).unwrap();
        path
    }

    #[test]
    fn add_checks_before_storing_and_keeps_one_build_per_version_and_target() {
        let dir = TestDir::new("releases-cli");
        let data = dir.path().join("data");
        let rng = ring::rand::SystemRandom::new();
        let key = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let other = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let pub_file = dir.path().join("release-key.pub");
        std::fs::write(&pub_file, base64::engine::general_purpose::STANDARD.encode(key.public_key().as_ref())).unwrap();
        let t = "armv7-unknown-linux-gnueabihf";

        let forged = signed(dir.path(), &other, "1.0.0", t, b"binary one");
        assert!(matches!(add(&data, &forged, &pub_file), Err(ReleaseError::Refused { .. })));
        let good = signed(dir.path(), &key, "1.0.0", t, b"binary one");
        let (row, new) = add(&data, &good, &pub_file).unwrap();
        assert!(new && row.id.starts_with("rel-") && row.object_key == format!("releases.{}", row.id));
        let stored = std::fs::read(data.join("objects/final").join(&row.object_key)).unwrap();
        assert_eq!(stored, b"binary one");
        // The same bytes again: the same row. Other bytes under the same version and target: refused.
        let (again, new) = add(&data, &good.with_extension(""), &pub_file).unwrap();
        assert!(!new && again.id == row.id);
        let changed = signed(dir.path(), &key, "1.0.0", t, b"binary two");
        assert!(matches!(add(&data, &changed, &pub_file), Err(ReleaseError::Conflict { .. })));
        // A file that is not what the manifest signed.
        let tampered = signed(dir.path(), &key, "1.0.1", t, b"binary three");
        std::fs::write(tampered.with_extension(""), b"binary 3hree").unwrap();
        assert!(matches!(add(&data, &tampered, &pub_file), Err(ReleaseError::Refused { .. })));
        let finals = std::fs::read_dir(data.join("objects/final")).unwrap().count();
        assert_eq!(finals, 1, "nothing but the accepted release is stored");
    }
}
