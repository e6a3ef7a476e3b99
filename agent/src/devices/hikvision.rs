//! Hikvision ISAPI (HTTP + XML, Digest auth): identity (`/ISAPI/System/deviceInfo`), health
//! (`/ISAPI/System/status`: CPU, memory, uptime) and, on NVRs, disks (`/ISAPI/ContentMgmt/Storage`),
//! channels online (`/ISAPI/ContentMgmt/InputProxy/channels/status`) and recording enabled per channel
//! (`/ISAPI/ContentMgmt/record/tracks`; track 101 is channel 1's main stream).
//! Elements are matched by local name: firmware generations differ in namespace (ver10 / ver20).

use super::digest::{self, Challenge, DigestSession};
use super::http::{self, HttpError, Limits, Request, Response};
use super::xml::{Doc, XmlError};
use super::{Channel, Credentials, ErrorClass, Identity};

#[derive(Debug, thiserror::Error)]
pub enum IsapiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{target}{path}: {source}")]
    Digest { target: String, path: &'static str, source: digest::DigestError },
    #[error("{target}{path}: credentials rejected (HTTP {status})")]
    Auth { target: String, path: &'static str, status: u16 },
    #[error("{target}{path}: HTTP {status}")]
    Status { target: String, path: &'static str, status: u16 },
    #[error("{target}{path}: unparseable XML: {source}")]
    Xml { target: String, path: &'static str, source: XmlError },
}

impl IsapiError {
    pub fn class(&self) -> ErrorClass {
        match self {
            IsapiError::Http(e) => e.class(),
            IsapiError::Digest { source, .. } => source.class(),
            IsapiError::Auth { .. } => ErrorClass::Auth,
            IsapiError::Status { status, .. } if (300..400).contains(status) => ErrorClass::Protocol,
            IsapiError::Status { .. } => ErrorClass::Fault,
            IsapiError::Xml { .. } => ErrorClass::Parse,
        }
    }
}

/// One disk of an NVR.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hdd {
    pub id: String,
    /// `ok`, `unformatted`, `error`, `idle`, ... as the device says.
    pub status: String,
    pub capacity_mb: Option<u64>,
    pub free_mb: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub cpu_pct: Option<f64>,
    pub mem_used_mb: Option<f64>,
    pub mem_free_mb: Option<f64>,
    pub uptime_s: Option<u64>,
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

    async fn send(&mut self, path: &'static str, auth: Option<String>) -> Result<Response, HttpError> {
        let headers = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        http::exchange(&self.target, &Request { method: "GET", path, headers, body: &[] }, &self.limits).await
    }

    /// GET with Digest, answering one challenge; the Digest state is kept for later requests.
    async fn get(&mut self, path: &'static str) -> Result<String, IsapiError> {
        let derr = |t: &str, source| IsapiError::Digest { target: t.to_owned(), path, source };
        let auth = match (self.digest.as_mut(), self.creds) {
            (Some(d), Some(c)) => Some(d.authorization("GET", path, c.user, c.pass).map_err(|e| derr(&self.target, e))?),
            _ => None,
        };
        let mut resp = self.send(path, auth).await?;
        if resp.status == 401 {
            let Some(c) = self.creds else {
                return Err(IsapiError::Auth { target: self.target.clone(), path, status: 401 });
            };
            let auth = match digest::pick(resp.headers_named("www-authenticate")).map_err(|e| derr(&self.target, e))? {
                Challenge::Digest(ch) => {
                    let mut d = DigestSession::new(ch);
                    let a = d.authorization("GET", path, c.user, c.pass).map_err(|e| derr(&self.target, e))?;
                    self.digest = Some(d);
                    a
                }
                Challenge::Basic => digest::basic(c.user, c.pass),
            };
            resp = self.send(path, Some(auth)).await?;
            if resp.status == 401 || resp.status == 403 {
                self.digest = None;
                return Err(IsapiError::Auth { target: self.target.clone(), path, status: resp.status });
            }
        }
        if resp.status != 200 {
            return Err(IsapiError::Status { target: self.target.clone(), path, status: resp.status });
        }
        Ok(String::from_utf8(resp.body).unwrap_or_default())
    }

    fn parse<'x>(&self, path: &'static str, text: &'x str) -> Result<Doc<'x>, IsapiError> {
        Doc::parse(text).map_err(|source| IsapiError::Xml { target: self.target.clone(), path, source })
    }

    pub async fn device_info(&mut self) -> Result<Identity, IsapiError> {
        const P: &str = "/ISAPI/System/deviceInfo";
        let text = self.get(P).await?;
        let doc = self.parse(P, &text)?;
        let t = |n: &str| doc.text(n).unwrap_or_default();
        Ok(Identity {
            manufacturer: "Hikvision".into(),
            model: t("model"),
            firmware: [t("firmwareVersion"), t("firmwareReleasedDate")].join(" ").trim().to_owned(),
            serial: t("serialNumber"),
            hardware_id: t("macAddress"),
        })
    }

    pub async fn status(&mut self) -> Result<Status, IsapiError> {
        const P: &str = "/ISAPI/System/status";
        let text = self.get(P).await?;
        let doc = self.parse(P, &text)?;
        let num = |n: &str| doc.text(n).and_then(|v| v.parse::<f64>().ok());
        Ok(Status {
            cpu_pct: num("cpuUtilization"),
            mem_used_mb: num("memoryUsage"),
            mem_free_mb: num("memoryAvailable"),
            uptime_s: doc.text("deviceUpTime").and_then(|v| v.parse().ok()),
        })
    }

    /// NVR channels: online from InputProxy, recording from the record tracks. Empty on a camera (404).
    pub async fn channels(&mut self) -> Result<Vec<Channel>, IsapiError> {
        const S: &str = "/ISAPI/ContentMgmt/InputProxy/channels/status";
        const T: &str = "/ISAPI/ContentMgmt/record/tracks";
        let absent = |e: &IsapiError| matches!(e, IsapiError::Status { status: 403 | 404 | 501, .. });
        let status = match self.get(S).await {
            Ok(t) => Some(t),
            Err(e) if absent(&e) => None,
            Err(e) => return Err(e),
        };
        let tracks = match self.get(T).await {
            Ok(t) => Some(t),
            Err(e) if absent(&e) => None,
            Err(e) => return Err(e),
        };
        let mut out = match &status {
            Some(text) => parse_channel_status(&self.parse(S, text)?),
            None => Vec::new(),
        };
        if let Some(text) = &tracks {
            merge_tracks(&mut out, &self.parse(T, text)?);
        }
        Ok(out)
    }

    pub async fn storage(&mut self) -> Result<Vec<Hdd>, IsapiError> {
        const P: &str = "/ISAPI/ContentMgmt/Storage";
        let text = self.get(P).await?;
        let doc = self.parse(P, &text)?;
        Ok(doc
            .find("hdd")
            .iter()
            .map(|h| Hdd {
                id: h.child_text("id").unwrap_or_default(),
                status: h.child_text("status").unwrap_or_default(),
                capacity_mb: h.child_text("capacity").and_then(|v| v.parse().ok()),
                free_mb: h.child_text("freeSpace").and_then(|v| v.parse().ok()),
            })
            .collect())
    }
}

/// `InputProxyChannelStatus` entries: `id` and `online` (true/false).
pub fn parse_channel_status(doc: &Doc<'_>) -> Vec<Channel> {
    doc.find("InputProxyChannelStatus")
        .iter()
        .filter_map(|c| {
            let id = c.child_text("id").filter(|i| !i.is_empty())?;
            let online = c.child_text("online").map(|v| v.eq_ignore_ascii_case("true"));
            Some(Channel { id, online, recording: None })
        })
        .collect()
}

/// Record tracks: `Channel` (or `id`) 101, 102, ... belong to channel 1 (main and sub stream); a
/// channel records when any of its tracks is enabled.
pub fn merge_tracks(channels: &mut Vec<Channel>, doc: &Doc<'_>) {
    for t in doc.find("Track") {
        let Some(track) = t.child_text("Channel").or_else(|| t.child_text("id")).and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let ch = if track >= 100 { track / 100 } else { track };
        let enabled = t.child_text("Enable").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let id = ch.to_string();
        match channels.iter_mut().find(|c| c.id == id) {
            Some(c) => c.recording = Some(c.recording.unwrap_or(false) || enabled),
            None => channels.push(Channel { id, online: None, recording: Some(enabled) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_status_and_tracks_merge() {
        let status = "<?xml version=\"1.0\"?><InputProxyChannelStatusList xmlns=\"http://www.hikvision.com/ver20/XMLSchema\">\
            <InputProxyChannelStatus><id>1</id><sourceInputPortDescriptor><ipAddress>10.0.0.2</ipAddress></sourceInputPortDescriptor>\
            <online>true</online></InputProxyChannelStatus><InputProxyChannelStatus><id>2</id><online>false</online>\
            </InputProxyChannelStatus><InputProxyChannelStatus><online>true</online></InputProxyChannelStatus></InputProxyChannelStatusList>";
        let mut c = parse_channel_status(&Doc::parse(status).unwrap());
        let tracks = "<TrackList><Track><id>101</id><Channel>101</Channel><Enable>true</Enable></Track>\
            <Track><id>102</id><Channel>102</Channel><Enable>false</Enable></Track>\
            <Track><id>201</id><Channel>201</Channel><Enable>false</Enable></Track>\
            <Track><id>301</id><Channel>301</Channel><Enable>true</Enable></Track><Track><Channel>x</Channel></Track></TrackList>";
        merge_tracks(&mut c, &Doc::parse(tracks).unwrap());
        let got: Vec<_> = c.iter().map(|c| (c.id.as_str(), c.online, c.recording)).collect();
        assert_eq!(got, [("1", Some(true), Some(true)), ("2", Some(false), Some(false)), ("3", None, Some(true))]);
    }
}
