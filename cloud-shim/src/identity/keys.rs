//! The shim's own secrets in `{data_dir}/keys/` (dir 0700, files 0600): the cloud's Ed25519 command key
//! (`cloud-sign.pk8`, PKCS#8 v2 from ring) and the password of the shim's own MQTT client
//! (`shim-mqtt.secret`). Created on first need; `serve` and `gateways add` may run at once on the same
//! data dir, so creation is race-free: the file is written aside and hard-linked into place, and the
//! loser of a race reads the winner's file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use scs_protocol::cose::SigningKey;

use super::IdentityError;

pub const KEYS_DIR: &str = "keys";
pub const CLOUD_SIGN_FILE: &str = "cloud-sign.pk8";
pub const SHIM_MQTT_SECRET_FILE: &str = "shim-mqtt.secret";
/// Username of the shim's own MQTT client on the embedded broker.
pub const SHIM_MQTT_USER: &str = "scs-shim";

pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR)
}

/// `n` bytes from the system CSPRNG; an error (never a weak fallback) when it is unavailable.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, IdentityError> {
    let mut buf = vec![0u8; n];
    SystemRandom::new().fill(&mut buf).map_err(|_| IdentityError::Random)?;
    Ok(buf)
}

/// Creates `dir` (and parents) and restricts it to the owner.
pub fn private_dir(dir: &Path) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Writes `data` to `path` with mode 0600, replacing it atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    // An existing file keeps its mode on open: force 0600 anyway.
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads `path`, or creates it with `make()` if it does not exist (first writer wins).
fn load_or_create(path: &Path, make: impl FnOnce() -> Result<Vec<u8>, IdentityError>) -> Result<Vec<u8>, IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    match std::fs::read(path) {
        Ok(b) => return Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let data = make()?;
    let tmp = path.with_extension(format!("new-{}-{}", std::process::id(), crate::random::random_hex(4)));
    write_private(&tmp, &data)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(data),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map_err(io),
        Err(e) => Err(io(e)),
    }
}

/// The cloud's command/receipt signing key, created on first use.
pub fn cloud_signing_key(data_dir: &Path) -> Result<SigningKey, IdentityError> {
    let path = keys_dir(data_dir).join(CLOUD_SIGN_FILE);
    let pkcs8 = load_or_create(&path, || {
        let (_, pkcs8) = SigningKey::generate().map_err(|source| IdentityError::Key { what: "cloud signing key", source })?;
        Ok(pkcs8)
    })?;
    SigningKey::from_pkcs8(&pkcs8).map_err(|source| IdentityError::Key { what: "cloud signing key", source })
}

/// A fresh MQTT password: 32 random bytes, base64url without padding.
pub fn new_password() -> Result<String, IdentityError> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32)?))
}

/// Lower-case hex SHA-256 of a password, as the `gateways` table stores it.
pub fn password_sha256(password: &str) -> String {
    crate::access::sha256_hex(password.as_bytes())
}

/// The password of the shim's own MQTT client on the embedded broker, created on first start.
pub fn shim_mqtt_secret(data_dir: &Path) -> Result<String, IdentityError> {
    let path = keys_dir(data_dir).join(SHIM_MQTT_SECRET_FILE);
    let bytes = load_or_create(&path, || Ok(new_password()?.into_bytes()))?;
    String::from_utf8(bytes).map(|s| s.trim().to_owned()).map_err(|_| IdentityError::Corrupt { path, what: "not UTF-8".into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::TestDir;

    #[test]
    fn keys_are_created_once_with_private_modes() {
        let dir = TestDir::new("keys");
        let a = cloud_signing_key(dir.path()).unwrap();
        let b = cloud_signing_key(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let s1 = shim_mqtt_secret(dir.path()).unwrap();
        assert_eq!(s1, shim_mqtt_secret(dir.path()).unwrap());
        assert_eq!(s1.len(), 43, "32 bytes base64url without padding");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys_dir(dir.path())), 0o700);
        assert_eq!(mode(&keys_dir(dir.path()).join(CLOUD_SIGN_FILE)), 0o600);
        assert_eq!(mode(&keys_dir(dir.path()).join(SHIM_MQTT_SECRET_FILE)), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(keys_dir(dir.path())).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn password_hash_is_hex_sha256() {
        assert_eq!(password_sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
