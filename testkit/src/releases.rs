//! Signed agent releases for the end-to-end tests of both clouds: `scripts/build-release` (OpenSSL, a
//! throwaway release key) and a real agent binary that reports another version.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{bin_path, workspace_root};

/// `scripts/build-release ARGS` with `env`; panics with its stderr when it fails.
pub fn build_release(args: &[&str], env: &[(&str, &Path)]) {
    let mut c = Command::new(workspace_root().join("scripts/build-release"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run scripts/build-release");
    assert!(o.status.success(), "build-release {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A version label as long as `v` and different from it (the last digit changed).
pub fn other_version(v: &str) -> String {
    let mut chars: Vec<char> = v.chars().collect();
    let i = chars.iter().rposition(char::is_ascii_digit).expect("a digit in the version");
    chars[i] = if chars[i] == '9' { '8' } else { char::from(chars[i] as u8 + 1) };
    chars.into_iter().collect()
}

/// This build's agent, stripped, reporting `new_version` instead of its own.
pub fn agent_with_version(dir: &Path, new_version: &str) -> PathBuf {
    let out = dir.join("scs-agent");
    let stripped =
        Command::new("strip").arg("-o").arg(&out).arg(bin_path("scs-agent")).status().map(|s| s.success()).unwrap_or(false);
    if !stripped {
        std::fs::copy(bin_path("scs-agent"), &out).expect("copy the agent");
    }
    let old = env!("CARGO_PKG_VERSION").as_bytes();
    assert_eq!(old.len(), new_version.len());
    let mut bytes = std::fs::read(&out).expect("read agent");
    let mut replaced = 0;
    let mut i = 0;
    while i + old.len() <= bytes.len() {
        if &bytes[i..i + old.len()] == old {
            bytes[i..i + old.len()].copy_from_slice(new_version.as_bytes());
            replaced += 1;
            i += old.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0, "version string {:?} not found in the agent binary", env!("CARGO_PKG_VERSION"));
    std::fs::write(&out, bytes).expect("write agent");
    out
}

/// The GNU target triple of this machine, as releases built here are labelled.
pub fn target_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// A signed update of `binary` as `version` for `target`, written beside it by `--sign-update`;
/// returns the manifest path.
pub fn sign(binary: &Path, version: &str, target: &str, key_pem: &Path) -> PathBuf {
    let mut c = Command::new(workspace_root().join("scripts/build-release"));
    c.env("SCS_RELEASE_KEY_FILE", key_pem).env("SCS_UPDATE_TARGET", target).arg("--sign-update").arg(binary).arg(version);
    let o = c.output().expect("run build-release --sign-update");
    assert!(o.status.success(), "sign: {}", String::from_utf8_lossy(&o.stderr));
    binary.parent().expect("dir").join(format!("scs-agent-{version}-{target}.update.json"))
}
