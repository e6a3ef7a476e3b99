//! Dahua CGI (HTTP, Digest auth, `key=value` text answers, not XML):
//!
//! * identity: `magicBox.cgi?action=getDeviceType` (`type=`), `getSerialNo` (`sn=`),
//!   `getSoftwareVersion` (`version=`), `getMachineName` (`name=`);
//! * disks: `storageDevice.cgi?action=getDeviceAllInfo` (`list.info[N].Name/State`,
//!   `list.info[N].Detail[M].TotalBytes/UsedBytes/IsError`, one Detail per partition);
//! * NVR channels: `LogicDeviceManager.cgi?action=getCameraState&uniqueChannels[0]=-1`
//!   (`states[N].channel`, `states[N].connectionState` = Connected / Connecting / Unconnect) and
//!   recording from `configManager.cgi?action=getConfig&name=RecordMode` (`table.RecordMode[N].Mode`:
//!   0 schedule, 1 manual/always, 2 off). Cameras lack the channel and disk CGIs: a 400/404/501 there
//!   is "not this kind of device", not a failure.
//!
//! Firmware differs in line endings, spacing around `=`, stray banner lines and keys it leaves out;
//! lines without `=` are skipped and every field is optional.

use super::digest::{self, AuthedGetError, DigestSession};
use super::http::{HttpError, Limits};
use super::{Channel, Credentials, ErrorClass, Identity};
use crate::devices::hikvision::Hdd;

#[derive(Debug, thiserror::Error)]
pub enum DahuaError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{target}{path}: {source}")]
    Digest { target: String, path: String, source: digest::DigestError },
    #[error("{target}{path}: credentials rejected (HTTP {status})")]
    Auth { target: String, path: String, status: u16 },
    #[error("{target}{path}: HTTP {status}")]
    Status { target: String, path: String, status: u16 },
    #[error("{target}{path}: answer lacks {what}")]
    Missing { target: String, path: String, what: &'static str },
}

impl DahuaError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DahuaError::Http(e) => e.class(),
            DahuaError::Digest { source, .. } => source.class(),
            DahuaError::Auth { .. } => ErrorClass::Auth,
            DahuaError::Status { status, .. } if (300..400).contains(status) => ErrorClass::Protocol,
            DahuaError::Status { .. } => ErrorClass::Fault,
            DahuaError::Missing { .. } => ErrorClass::Parse,
        }
    }

    /// The device does not have this CGI (a camera asked for NVR disks or channels).
    pub fn is_absent(&self) -> bool {
        matches!(self, DahuaError::Status { status: 400 | 404 | 501, .. })
    }
}

pub const DEVICE_TYPE: &str = "/cgi-bin/magicBox.cgi?action=getDeviceType";
pub const SERIAL: &str = "/cgi-bin/magicBox.cgi?action=getSerialNo";
pub const SOFTWARE: &str = "/cgi-bin/magicBox.cgi?action=getSoftwareVersion";
pub const MACHINE_NAME: &str = "/cgi-bin/magicBox.cgi?action=getMachineName";
pub const STORAGE: &str = "/cgi-bin/storageDevice.cgi?action=getDeviceAllInfo";
pub const CAMERA_STATE: &str = "/cgi-bin/LogicDeviceManager.cgi?action=getCameraState&uniqueChannels[0]=-1";
pub const RECORD_MODE: &str = "/cgi-bin/configManager.cgi?action=getConfig&name=RecordMode";

/// `key=value` lines of a CGI answer, in order, keys and values trimmed. Lines without `=` (banners,
/// `OK`, garbage) are skipped.
pub fn parse_kv(text: &str) -> Vec<(&str, &str)> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).filter(|(k, _)| !k.is_empty()).collect()
}

/// The value of `key` (case-insensitive) in parsed `key=value` lines.
pub fn value<'a>(kv: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v)
}

/// Splits `prefix[N].rest` into (N, rest).
fn indexed<'a>(key: &'a str, prefix: &str) -> Option<(u32, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('[')?;
    let (n, rest) = rest.split_once(']')?;
    Some((n.parse().ok()?, rest.strip_prefix('.').unwrap_or(rest)))
}

/// Disks from a `getDeviceAllInfo` answer. Status is `ok` when the disk state is `Success` and no
/// partition reports an error, else the device's state word (or `error`), lower-cased.
pub fn parse_storage(text: &str) -> Vec<Hdd> {
    #[derive(Default)]
    struct Acc {
        name: Option<String>,
        state: Option<String>,
        total: f64,
        used: f64,
        sized: bool,
        error: bool,
    }
    let mut disks: std::collections::BTreeMap<u32, Acc> = std::collections::BTreeMap::new();
    for (k, v) in parse_kv(text) {
        let Some((n, rest)) = indexed(k, "list.info") else { continue };
        let d = disks.entry(n).or_default();
        if rest.eq_ignore_ascii_case("Name") {
            d.name = Some(v.to_owned());
        } else if rest.eq_ignore_ascii_case("State") {
            d.state = Some(v.to_owned());
        } else if let Some((_, field)) = indexed(rest, "Detail") {
            let num = v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
            match field {
                "TotalBytes" => {
                    if let Some(x) = num {
                        d.total += x;
                        d.sized = true;
                    }
                }
                "UsedBytes" => d.used += num.unwrap_or(0.0),
                "IsError" => d.error |= v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
    }
    const MB: f64 = 1024.0 * 1024.0;
    disks
        .into_iter()
        .filter(|(_, d)| d.name.is_some() || d.state.is_some() || d.sized)
        .map(|(n, d)| {
            let state = d.state.unwrap_or_default();
            let status = if state.eq_ignore_ascii_case("Success") && !d.error {
                "ok".to_owned()
            } else if state.is_empty() || state.eq_ignore_ascii_case("Success") {
                "error".to_owned()
            } else {
                state.to_ascii_lowercase()
            };
            Hdd {
                // Device names (`/dev/sda`) are stable across reboots, unlike list positions after a
                // disk is pulled.
                id: d.name.filter(|s| !s.is_empty()).unwrap_or_else(|| n.to_string()),
                status,
                capacity_mb: d.sized.then(|| (d.total / MB).round() as u64),
                free_mb: d.sized.then(|| ((d.total - d.used).max(0.0) / MB).round() as u64),
            }
        })
        .collect()
}

/// Channels from `getCameraState` (online) merged with `RecordMode` (recording). Channel labels are
/// 1-based as the NVR's own UI shows them (the CGI counts from 0).
pub fn parse_channels(state: &str, record_mode: Option<&str>) -> Vec<Channel> {
    let mut by: std::collections::BTreeMap<u32, Channel> = std::collections::BTreeMap::new();
    let mut slot_channel: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
    let mut slot_state: std::collections::BTreeMap<u32, bool> = std::collections::BTreeMap::new();
    for (k, v) in parse_kv(state) {
        let Some((n, rest)) = indexed(k, "states") else { continue };
        if rest.eq_ignore_ascii_case("channel") {
            if let Ok(c) = v.parse() {
                slot_channel.insert(n, c);
            }
        } else if rest.eq_ignore_ascii_case("connectionState") {
            slot_state.insert(n, v.eq_ignore_ascii_case("Connected"));
        }
    }
    for (slot, online) in slot_state {
        let ch = slot_channel.get(&slot).copied().unwrap_or(slot);
        by.entry(ch).or_insert_with(|| Channel { id: (u64::from(ch) + 1).to_string(), ..Channel::default() }).online =
            Some(online);
    }
    for (k, v) in parse_kv(record_mode.unwrap_or_default()) {
        let Some((n, rest)) = indexed(k, "table.RecordMode") else { continue };
        if !rest.eq_ignore_ascii_case("Mode") {
            continue;
        }
        let Ok(mode) = v.parse::<u32>() else { continue };
        by.entry(n).or_insert_with(|| Channel { id: (u64::from(n) + 1).to_string(), ..Channel::default() }).recording =
            Some(mode != 2);
    }
    by.into_values().collect()
}

pub struct Client<'a> {
    target: String,
    creds: Option<Credentials<'a>>,
    limits: Limits,
    digest: Option<DigestSession>,
}

impl<'a> Client<'a> {
    pub fn new(target: &str, creds: Option<Credentials<'a>>, limits: Limits) -> Client<'a> {
        Client { target: target.to_owned(), creds, limits, digest: None }
    }

    /// GET with Digest (one challenge answered, state kept for later requests); the body as text.
    pub async fn get(&mut self, path: &str) -> Result<String, DahuaError> {
        let resp =
            digest::authed_get(&self.target, path, self.creds, &self.limits, &mut self.digest).await.map_err(|e| match e {
                AuthedGetError::Http(h) => DahuaError::Http(h),
                AuthedGetError::Digest(source) => {
                    DahuaError::Digest { target: self.target.clone(), path: path.to_owned(), source }
                }
                AuthedGetError::Rejected(status) => {
                    DahuaError::Auth { target: self.target.clone(), path: path.to_owned(), status }
                }
            })?;
        if resp.status != 200 {
            return Err(DahuaError::Status { target: self.target.clone(), path: path.to_owned(), status: resp.status });
        }
        Ok(String::from_utf8_lossy(&resp.body).into_owned())
    }

    async fn one(&mut self, path: &str, key: &str) -> Result<Option<String>, DahuaError> {
        let text = self.get(path).await?;
        Ok(value(&parse_kv(&text), key).map(str::to_owned))
    }

    /// Identity from magicBox. The serial is required (it is what tells a replaced unit); the other
    /// fields are best effort, since some firmware answers 400 to `getMachineName`.
    pub async fn identity(&mut self) -> Result<Identity, DahuaError> {
        let serial = self.one(SERIAL, "sn").await?.filter(|s| !s.is_empty()).ok_or_else(|| DahuaError::Missing {
            target: self.target.clone(),
            path: SERIAL.to_owned(),
            what: "sn",
        })?;
        let model = self.one(DEVICE_TYPE, "type").await?.unwrap_or_default();
        let firmware = self.one(SOFTWARE, "version").await?.unwrap_or_default();
        let name = match self.one(MACHINE_NAME, "name").await {
            Ok(n) => n.unwrap_or_default(),
            Err(e) if e.is_absent() => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Identity { manufacturer: "Dahua".into(), model, firmware, serial, hardware_id: name })
    }

    pub async fn storage(&mut self) -> Result<Vec<Hdd>, DahuaError> {
        Ok(parse_storage(&self.get(STORAGE).await?))
    }

    /// NVR channels (online and recording); empty on a camera, which has no LogicDeviceManager.
    pub async fn channels(&mut self) -> Result<Vec<Channel>, DahuaError> {
        let state = match self.get(CAMERA_STATE).await {
            Ok(s) => s,
            Err(e) if e.is_absent() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let modes = match self.get(RECORD_MODE).await {
            Ok(m) => Some(m),
            Err(e) if e.is_absent() => None,
            Err(e) => return Err(e),
        };
        Ok(parse_channels(&state, modes.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_answers_tolerate_garbage_and_spacing() {
        let kv = parse_kv("Error\r\nsn = 4K01234PAZ\r\n\r\n=orphan\r\nno equals here\ntype=DHI-NVR");
        assert_eq!(kv, [("sn", "4K01234PAZ"), ("type", "DHI-NVR")]);
        assert_eq!(value(&kv, "SN"), Some("4K01234PAZ"));
        assert_eq!(indexed("list.info[3].Detail[1].TotalBytes", "list.info"), Some((3, "Detail[1].TotalBytes")));
        assert_eq!(indexed("list.info[x].Name", "list.info"), None);
    }

    #[test]
    fn storage_sums_partitions_and_maps_states() {
        let text = "list.info[0].Detail[0].IsError=false\r\nlist.info[0].Detail[0].TotalBytes=1000000000000.000000\r\n\
                    list.info[0].Detail[0].UsedBytes=400000000000.000000\r\nlist.info[0].Detail[1].TotalBytes=1000000000.0\r\n\
                    list.info[0].Detail[1].UsedBytes=0\r\nlist.info[0].Name=/dev/sda\r\nlist.info[0].State=Success\r\n\
                    list.info[1].Detail[0].IsError=true\r\nlist.info[1].Detail[0].TotalBytes=2000000000000\r\n\
                    list.info[1].Name=/dev/sdb\r\nlist.info[1].State=Success\r\nlist.info[2].Name=/dev/sdc\r\n\
                    list.info[2].State=Error\r\ngarbage line\r\nlist.info[9].Unknown=1\r\n";
        let d = parse_storage(text);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!((d[0].id.as_str(), d[0].status.as_str()), ("/dev/sda", "ok"));
        assert_eq!(d[0].capacity_mb, Some(954_628));
        assert_eq!(d[0].free_mb, Some(573_158));
        assert_eq!(d[1].status, "error", "a partition error fails the disk");
        assert_eq!(d[1].free_mb, Some(1_907_349), "missing UsedBytes = empty");
        assert_eq!((d[2].status.as_str(), d[2].capacity_mb), ("error", None));
        assert!(parse_storage("").is_empty());
    }

    #[test]
    fn channels_merge_state_and_record_mode() {
        let state = "states[0].channel=0\r\nstates[0].connectionState=Connected\r\nstates[1].channel=1\r\n\
                     states[1].connectionState=Unconnect\r\nstates[2].connectionState=Connecting\r\n";
        let modes = "table.RecordMode[0].Mode=0\r\ntable.RecordMode[1].Mode=2\r\ntable.RecordMode[3].Mode=1\r\n";
        let c = parse_channels(state, Some(modes));
        let got: Vec<_> = c.iter().map(|c| (c.id.as_str(), c.online, c.recording)).collect();
        assert_eq!(
            got,
            [("1", Some(true), Some(true)), ("2", Some(false), Some(false)), ("3", Some(false), None), ("4", None, Some(true))]
        );
        assert!(parse_channels("", None).is_empty());
    }
}
