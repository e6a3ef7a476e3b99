//! ONVIF device and media services (Profile S/T) over SOAP 1.2.
//!
//! Order of a management probe: GetSystemDateAndTime without credentials (liveness and the device's
//! clock offset; devices must answer it unauthenticated), then authenticated calls with a
//! WS-UsernameToken whose `Created` is shifted by that offset (devices reject tokens more than a few
//! seconds off their own clock). A 401 switches to HTTP Digest (RFC 7616) and keeps the token too,
//! since some firmware wants both. GetServices finds the media service; old firmware lacks it, so
//! GetCapabilities is the fallback. Faults arrive with HTTP 200, 400 or 500 and any prefixes: the
//! body is checked for a Fault element whatever the status.

use std::time::Duration;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use super::digest::{self, Challenge, DigestSession};
use super::http::{self, HttpError, Limits, Request, Response};
use super::xml::{escape, Doc, XmlError};
use super::{Credentials, ErrorClass, Identity, StreamInfo};

/// Where the device service lives when nothing else is known (ONVIF Core, "device_service").
pub const DEVICE_PATH: &str = "/onvif/device_service";
/// ONVIF Profile G services (recorders).
pub const SEARCH_NS: &str = "http://www.onvif.org/ver10/search/wsdl";
pub const RECORDING_NS: &str = "http://www.onvif.org/ver10/recording/wsdl";
pub const REPLAY_NS: &str = "http://www.onvif.org/ver10/replay/wsdl";

/// Paths of a recorder's Profile G services (`None`: the device does not offer it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileG {
    pub search: Option<String>,
    pub recording: Option<String>,
    pub replay: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OnvifError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{target}: {source}")]
    Digest { target: String, source: digest::DigestError },
    #[error("{target}: {action}: unparseable XML: {source}")]
    Xml { target: String, action: &'static str, source: XmlError },
    #[error("{target}: {action}: SOAP fault {code} {subcode}: {reason}")]
    Fault { target: String, action: &'static str, code: String, subcode: String, reason: String },
    #[error("{target}: {action}: credentials rejected (HTTP {status})")]
    Auth { target: String, action: &'static str, status: u16 },
    #[error("{target}: {action}: no credentials configured")]
    NoCredentials { target: String, action: &'static str },
    #[error("{target}: {action}: HTTP {status}")]
    Status { target: String, action: &'static str, status: u16 },
    #[error("{target}: {action}: answer lacks {what}")]
    Missing { target: String, action: &'static str, what: &'static str },
    #[error("system random source failed")]
    Random,
}

impl OnvifError {
    pub fn class(&self) -> ErrorClass {
        match self {
            OnvifError::Http(e) => e.class(),
            OnvifError::Digest { source, .. } => source.class(),
            OnvifError::Xml { .. } | OnvifError::Missing { .. } => ErrorClass::Parse,
            OnvifError::Fault { subcode, .. } if is_auth_fault(subcode) => ErrorClass::Auth,
            OnvifError::Fault { .. } => ErrorClass::Fault,
            OnvifError::Auth { .. } | OnvifError::NoCredentials { .. } => ErrorClass::Auth,
            OnvifError::Status { status, .. } if (300..400).contains(status) => ErrorClass::Protocol,
            OnvifError::Status { .. } => ErrorClass::Fault,
            OnvifError::Random => ErrorClass::Protocol,
        }
    }
}

/// `ter:NotAuthorized` (ONVIF) and `wsse:FailedAuthentication` (WS-Security) by local name.
fn is_auth_fault(subcode: &str) -> bool {
    let l = subcode.rsplit_once(':').map_or(subcode, |(_, l)| l);
    l.eq_ignore_ascii_case("NotAuthorized") || l.eq_ignore_ascii_case("FailedAuthentication")
}

/// WS-Security UsernameToken PasswordDigest: Base64(SHA-1(nonce + created + password)).
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

const WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";

/// The `<Security>` header for one request.
pub fn username_token(user: &str, password: &str, nonce: &[u8], created: &str) -> String {
    format!(
        "<wsse:Security s:mustUnderstand=\"1\" xmlns:wsse=\"{WSSE}\" xmlns:wsu=\"{WSU}\"><wsse:UsernameToken>\
         <wsse:Username>{}</wsse:Username>\
         <wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest\">{}</wsse:Password>\
         <wsse:Nonce EncodingType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary\">{}</wsse:Nonce>\
         <wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>",
        escape(user),
        password_digest(nonce, created, password),
        base64::engine::general_purpose::STANDARD.encode(nonce),
    )
}

pub fn envelope(header: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:tds=\"http://www.onvif.org/ver10/device/wsdl\" xmlns:trt=\"http://www.onvif.org/ver10/media/wsdl\" \
         xmlns:tt=\"http://www.onvif.org/ver10/schema\"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of the civil-from-days in
/// `commands/time.rs`).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// xsd:dateTime in UTC to the second, as devices expect in `Created`.
pub fn created_at(unix_secs: i64) -> String {
    let ms = u64::try_from(unix_secs).unwrap_or(0).saturating_mul(1000);
    crate::clock::rfc3339_utc(ms).replace(".000Z", "Z")
}

/// The device's UTC time from a GetSystemDateAndTimeResponse, as Unix seconds.
pub fn parse_device_time(doc: &Doc<'_>) -> Option<i64> {
    let utc = doc.find("UTCDateTime").into_iter().next()?;
    let num = |name: &str| -> Option<i64> { utc.child_text(name)?.parse().ok() };
    let (y, mo, d) = (num("Year")?, num("Month")?, num("Day")?);
    let (h, mi, s) = (num("Hour")?, num("Minute")?, num("Second")?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

fn unix_now_f64() -> f64 {
    crate::clock::now_ms() as f64 / 1000.0
}

/// A media profile and the URIs resolved for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub token: String,
    pub name: String,
    pub encoding: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// What one management round learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Management {
    pub clock_offset_s: i64,
    pub identity: Identity,
    pub media_path: String,
    pub profiles: Vec<Profile>,
    pub streams: Vec<StreamInfo>,
    pub snapshot_uri: Option<String>,
}

/// One ONVIF device session: target, credentials, the clock offset and a reusable Digest nonce.
pub struct Client<'a> {
    pub target: String,
    creds: Option<Credentials<'a>>,
    pub limits: Limits,
    pub clock_offset_s: i64,
    digest: Option<DigestSession>,
    basic: bool,
}

impl<'a> Client<'a> {
    pub fn new(target: &str, creds: Option<Credentials<'a>>, limits: Limits) -> Client<'a> {
        Client { target: target.to_owned(), creds, limits, clock_offset_s: 0, digest: None, basic: false }
    }

    fn security_header(&self) -> Result<String, OnvifError> {
        let Some(c) = self.creds else { return Ok(String::new()) };
        let mut nonce = [0u8; 16];
        SystemRandom::new().fill(&mut nonce).map_err(|_| OnvifError::Random)?;
        let created = created_at(unix_now_f64().round() as i64 + self.clock_offset_s);
        Ok(username_token(c.user, c.pass, &nonce, &created))
    }

    async fn post(&mut self, path: &str, envelope: &str, authorization: Option<String>) -> Result<Response, HttpError> {
        let mut headers = vec![("Content-Type", "application/soap+xml; charset=utf-8".to_owned())];
        if let Some(a) = authorization {
            headers.push(("Authorization", a));
        }
        let req = Request { method: "POST", path, headers, body: envelope.as_bytes() };
        http::exchange(&self.target, &req, &self.limits).await
    }

    fn http_auth(&mut self, path: &str) -> Result<Option<String>, OnvifError> {
        let Some(c) = self.creds else { return Ok(None) };
        if let Some(d) = self.digest.as_mut() {
            return d
                .authorization("POST", path, c.user, c.pass)
                .map(Some)
                .map_err(|source| OnvifError::Digest { target: self.target.clone(), source });
        }
        Ok(self.basic.then(|| digest::basic(c.user, c.pass)))
    }

    /// One SOAP call; returns the response body (the caller parses it). `authenticated = false` sends
    /// no credentials at all (GetSystemDateAndTime).
    pub async fn call(
        &mut self,
        path: &str,
        action: &'static str,
        body: &str,
        authenticated: bool,
    ) -> Result<String, OnvifError> {
        let header = if authenticated { self.security_header()? } else { String::new() };
        let auth = if authenticated { self.http_auth(path)? } else { None };
        let mut resp = self.post(path, &envelope(&header, body), auth).await?;
        if resp.status == 401 && authenticated {
            if self.creds.is_none() {
                return Err(OnvifError::NoCredentials { target: self.target.clone(), action });
            }
            // New (or stale) challenge: one retry with fresh Digest state and a fresh token.
            match digest::pick(resp.headers_named("www-authenticate"))
                .map_err(|source| OnvifError::Digest { target: self.target.clone(), source })?
            {
                Challenge::Digest(c) => {
                    self.digest = Some(DigestSession::new(c));
                    self.basic = false;
                }
                Challenge::Basic => {
                    self.digest = None;
                    self.basic = true;
                }
            }
            let header = self.security_header()?;
            let auth = self.http_auth(path)?;
            resp = self.post(path, &envelope(&header, body), auth).await?;
            if resp.status == 401 {
                self.digest = None;
                return Err(OnvifError::Auth { target: self.target.clone(), action, status: 401 });
            }
        } else if resp.status == 401 {
            return Err(OnvifError::Auth { target: self.target.clone(), action, status: 401 });
        }
        let text = String::from_utf8(resp.body).unwrap_or_default();
        if !text.trim().is_empty() {
            let doc = Doc::parse(&text).map_err(|source| OnvifError::Xml { target: self.target.clone(), action, source })?;
            if let Some(fault) = doc.find("Fault").first() {
                // SOAP 1.2: Code/Value and Code/Subcode/Value; SOAP 1.1: faultcode/faultstring.
                let values: Vec<String> = fault.find("Value").iter().map(|v| v.text()).collect();
                let code = values.first().cloned().or_else(|| fault.child_text("faultcode")).unwrap_or_default();
                let subcode = values.last().cloned().unwrap_or_default();
                let reason = fault.child_text("Text").or_else(|| fault.child_text("faultstring")).unwrap_or_default();
                return Err(OnvifError::Fault { target: self.target.clone(), action, code, subcode, reason });
            }
            if resp.status == 200 {
                return Ok(text);
            }
        }
        if resp.status == 403 {
            return Err(OnvifError::Auth { target: self.target.clone(), action, status: 403 });
        }
        Err(OnvifError::Status { target: self.target.clone(), action, status: resp.status })
    }

    fn missing(&self, action: &'static str, what: &'static str) -> OnvifError {
        OnvifError::Missing { target: self.target.clone(), action, what }
    }

    fn xml_err(&self, action: &'static str) -> impl FnOnce(XmlError) -> OnvifError + '_ {
        move |source| OnvifError::Xml { target: self.target.clone(), action, source }
    }

    /// Unauthenticated GetSystemDateAndTime: sets and returns the clock offset (device minus gateway,
    /// seconds), measured against the midpoint of the exchange.
    pub async fn sync_clock(&mut self, path: &str) -> Result<i64, OnvifError> {
        const A: &str = "GetSystemDateAndTime";
        let before = unix_now_f64();
        let text = self.call(path, A, "<tds:GetSystemDateAndTime/>", false).await?;
        let mid = (before + unix_now_f64()) / 2.0;
        let doc = Doc::parse(&text).map_err(self.xml_err(A))?;
        let device = parse_device_time(&doc).ok_or_else(|| self.missing(A, "UTCDateTime"))?;
        self.clock_offset_s = (device as f64 - mid).round() as i64;
        Ok(self.clock_offset_s)
    }

    pub async fn device_information(&mut self, path: &str) -> Result<Identity, OnvifError> {
        const A: &str = "GetDeviceInformation";
        let text = self.call(path, A, "<tds:GetDeviceInformation/>", true).await?;
        let doc = Doc::parse(&text).map_err(self.xml_err(A))?;
        let resp = doc.find("GetDeviceInformationResponse");
        let r = resp.first().ok_or_else(|| self.missing(A, "GetDeviceInformationResponse"))?;
        let t = |n: &str| r.child_text(n).unwrap_or_default();
        Ok(Identity {
            manufacturer: t("Manufacturer"),
            model: t("Model"),
            firmware: t("FirmwareVersion"),
            serial: t("SerialNumber"),
            hardware_id: t("HardwareId"),
        })
    }

    /// The media service path: GetServices, else GetCapabilities (firmware before ONVIF 2.0).
    pub async fn media_path(&mut self, path: &str) -> Result<String, OnvifError> {
        const S: &str = "GetServices";
        match self
            .call(path, S, "<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>", true)
            .await
        {
            Ok(text) => {
                let doc = Doc::parse(&text).map_err(self.xml_err(S))?;
                let media = doc
                    .find("Service")
                    .into_iter()
                    .find(|s| s.child_text("Namespace").is_some_and(|n| n == "http://www.onvif.org/ver10/media/wsdl"));
                if let Some(x) = media.and_then(|m| m.child_text("XAddr")) {
                    return self.xaddr_path(&x, S);
                }
            }
            Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
            // Not implemented by this firmware (fault, 400, 404, 500): fall back.
            Err(_) => {}
        }
        const C: &str = "GetCapabilities";
        let text =
            self.call(path, C, "<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>", true).await?;
        let doc = Doc::parse(&text).map_err(self.xml_err(C))?;
        let media = doc.find("Media");
        let x = media.first().and_then(|m| m.child_text("XAddr")).ok_or_else(|| self.missing(C, "Media XAddr"))?;
        self.xaddr_path(&x, C)
    }

    /// Only the path of an XAddr is used: cameras behind NAT or with a stale factory IP announce
    /// addresses the gateway cannot reach, while the configured address always is.
    fn xaddr_path(&self, xaddr: &str, action: &'static str) -> Result<String, OnvifError> {
        http::split_url(xaddr.trim(), 80).map(|(_, p)| p).ok_or_else(|| self.missing(action, "usable http XAddr"))
    }

    pub async fn profiles(&mut self, media: &str) -> Result<Vec<Profile>, OnvifError> {
        const A: &str = "GetProfiles";
        let text = self.call(media, A, "<trt:GetProfiles/>", true).await?;
        let doc = Doc::parse(&text).map_err(self.xml_err(A))?;
        let out = doc
            .find("Profiles")
            .iter()
            .filter_map(|p| {
                let token = p.attr("token")?;
                let enc = p.find("VideoEncoderConfiguration");
                let enc = enc.first();
                let num = |n: &str| enc.and_then(|e| e.child_text(n)).and_then(|v| v.parse().ok());
                Some(Profile {
                    token,
                    name: p.child_text("Name").unwrap_or_default(),
                    encoding: enc.and_then(|e| e.child_text("Encoding")),
                    width: num("Width"),
                    height: num("Height"),
                })
            })
            .collect::<Vec<_>>();
        if out.is_empty() {
            return Err(self.missing(A, "a profile with a token"));
        }
        Ok(out)
    }

    pub async fn stream_uri(&mut self, media: &str, token: &str) -> Result<String, OnvifError> {
        const A: &str = "GetStreamUri";
        let body = format!(
            "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol>\
             </tt:Transport></trt:StreamSetup><trt:ProfileToken>{}</trt:ProfileToken></trt:GetStreamUri>",
            escape(token)
        );
        let text = self.call(media, A, &body, true).await?;
        Doc::parse(&text).map_err(self.xml_err(A))?.text("Uri").filter(|u| !u.is_empty()).ok_or_else(|| self.missing(A, "Uri"))
    }

    pub async fn snapshot_uri(&mut self, media: &str, token: &str) -> Result<String, OnvifError> {
        const A: &str = "GetSnapshotUri";
        let body = format!("<trt:GetSnapshotUri><trt:ProfileToken>{}</trt:ProfileToken></trt:GetSnapshotUri>", escape(token));
        let text = self.call(media, A, &body, true).await?;
        Doc::parse(&text).map_err(self.xml_err(A))?.text("Uri").filter(|u| !u.is_empty()).ok_or_else(|| self.missing(A, "Uri"))
    }

    /// Profile G service paths (search, recording) from GetServices, else GetCapabilities (`All`,
    /// `Extension/Search` and `Extension/Recording`). Both `None` on a device that records nothing.
    pub async fn recording_services(&mut self, path: &str) -> Result<(Option<String>, Option<String>), OnvifError> {
        let g = self.profile_g(path).await?;
        Ok((g.search, g.recording))
    }

    /// Profile G service paths (search, recording, replay) from GetServices, else GetCapabilities
    /// (`All`: `Extension/Search`, `Extension/Recording`, `Extension/Replay`).
    pub async fn profile_g(&mut self, path: &str) -> Result<ProfileG, OnvifError> {
        const S: &str = "GetServices";
        match self
            .call(path, S, "<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>", true)
            .await
        {
            Ok(text) => {
                let doc = Doc::parse(&text).map_err(self.xml_err(S))?;
                let find = |ns: &str| {
                    doc.find("Service")
                        .into_iter()
                        .find(|s| s.child_text("Namespace").is_some_and(|n| n == ns))
                        .and_then(|s| s.child_text("XAddr"))
                        .and_then(|x| self.xaddr_path(&x, S).ok())
                };
                return Ok(ProfileG { search: find(SEARCH_NS), recording: find(RECORDING_NS), replay: find(REPLAY_NS) });
            }
            Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
            Err(_) => {}
        }
        const C: &str = "GetCapabilities";
        let text =
            self.call(path, C, "<tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities>", true).await?;
        let doc = Doc::parse(&text).map_err(self.xml_err(C))?;
        let xaddr =
            |name: &str| doc.find(name).first().and_then(|e| e.child_text("XAddr")).and_then(|x| self.xaddr_path(&x, C).ok());
        Ok(ProfileG { search: xaddr("Search"), recording: xaddr("Recording"), replay: xaddr("Replay") })
    }

    /// Recording tokens in the order the recording service lists them (GetRecordings).
    pub async fn recording_tokens(&mut self, recording: &str) -> Result<Vec<String>, OnvifError> {
        const R: &str = "GetRecordings";
        let body = format!("<trc:GetRecordings xmlns:trc=\"{RECORDING_NS}\"/>");
        let text = self.call(recording, R, &body, true).await?;
        let doc = Doc::parse(&text).map_err(self.xml_err(R))?;
        Ok(doc.find("RecordingItem").iter().filter_map(|i| i.child_text("RecordingToken")).filter(|t| !t.is_empty()).collect())
    }

    /// Recording tokens from the search service: FindRecordings (no scope), then
    /// GetRecordingSearchResults until the search is `Completed` (at most 8 rounds), then EndSearch.
    pub async fn find_recordings(&mut self, search: &str) -> Result<Vec<String>, OnvifError> {
        const F: &str = "FindRecordings";
        let body = format!(
            "<tse:FindRecordings xmlns:tse=\"{SEARCH_NS}\"><tse:Scope/><tse:MaxMatches>64</tse:MaxMatches>\
             <tse:KeepAliveTime>PT10S</tse:KeepAliveTime></tse:FindRecordings>"
        );
        let text = self.call(search, F, &body, true).await?;
        let token = Doc::parse(&text)
            .map_err(self.xml_err(F))?
            .text("SearchToken")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.missing(F, "SearchToken"))?;
        const G: &str = "GetRecordingSearchResults";
        let mut out: Vec<String> = Vec::new();
        for _ in 0..8 {
            let body = format!(
                "<tse:GetRecordingSearchResults xmlns:tse=\"{SEARCH_NS}\"><tse:SearchToken>{}</tse:SearchToken>\
                 <tse:MaxResults>64</tse:MaxResults><tse:WaitTime>PT2S</tse:WaitTime></tse:GetRecordingSearchResults>",
                escape(&token)
            );
            let text = self.call(search, G, &body, true).await?;
            let doc = Doc::parse(&text).map_err(self.xml_err(G))?;
            for t in doc.find("RecordingInformation").iter().filter_map(|i| i.child_text("RecordingToken")) {
                if !t.is_empty() && !out.contains(&t) {
                    out.push(t);
                }
            }
            if doc.text("SearchState").is_none_or(|s| s == "Completed") {
                break;
            }
        }
        let body = format!(
            "<tse:EndSearch xmlns:tse=\"{SEARCH_NS}\"><tse:SearchToken>{}</tse:SearchToken></tse:EndSearch>",
            escape(&token)
        );
        // The search ends by itself after KeepAliveTime; a refused EndSearch changes nothing.
        if let Err(e) = self.call(search, "EndSearch", &body, true).await {
            log::debug!("{e}");
        }
        Ok(out)
    }

    /// GetReplayUri (replay service): the RTSP URI that replays a recording.
    pub async fn replay_uri(&mut self, replay: &str, recording_token: &str) -> Result<String, OnvifError> {
        const A: &str = "GetReplayUri";
        let body = format!(
            "<trp:GetReplayUri xmlns:trp=\"{REPLAY_NS}\"><trp:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport>\
             <tt:Protocol>RTSP</tt:Protocol></tt:Transport></trp:StreamSetup><trp:RecordingToken>{}</trp:RecordingToken></trp:GetReplayUri>",
            escape(recording_token)
        );
        let text = self.call(replay, A, &body, true).await?;
        Doc::parse(&text).map_err(self.xml_err(A))?.text("Uri").filter(|u| !u.is_empty()).ok_or_else(|| self.missing(A, "Uri"))
    }

    /// Recordings held by a Profile G recorder: `NumberRecordings` of GetRecordingSummary (search
    /// service), else the `RecordingItem`s of GetRecordings (recording service). `None` when the device
    /// has neither service.
    pub async fn recording_count(&mut self, path: &str) -> Result<Option<u64>, OnvifError> {
        let (search, recording) = self.recording_services(path).await?;
        if let Some(sp) = search {
            const A: &str = "GetRecordingSummary";
            let body = format!("<tse:GetRecordingSummary xmlns:tse=\"{SEARCH_NS}\"/>");
            let text = self.call(&sp, A, &body, true).await?;
            let doc = Doc::parse(&text).map_err(self.xml_err(A))?;
            if let Some(n) = doc.text("NumberRecordings").and_then(|v| v.parse().ok()) {
                return Ok(Some(n));
            }
        }
        let Some(rp) = recording else { return Ok(None) };
        const R: &str = "GetRecordings";
        let body = format!("<trc:GetRecordings xmlns:trc=\"{RECORDING_NS}\"/>");
        let text = self.call(&rp, R, &body, true).await?;
        let doc = Doc::parse(&text).map_err(self.xml_err(R))?;
        Ok(Some(doc.find("RecordingItem").len() as u64))
    }

    /// A full management round. Per-profile URI failures leave that profile out rather than failing
    /// the round: one broken sub-stream must not hide the device's identity.
    pub async fn management(&mut self, path: &str) -> Result<Management, OnvifError> {
        let clock_offset_s = self.sync_clock(path).await?;
        let identity = self.device_information(path).await?;
        let media_path = self.media_path(path).await?;
        let profiles = self.profiles(&media_path).await?;
        let mut streams = Vec::new();
        for p in &profiles {
            match self.stream_uri(&media_path, &p.token).await {
                Ok(uri) => streams.push(StreamInfo {
                    profile: p.token.clone(),
                    uri,
                    codec: p.encoding.clone(),
                    width: p.width,
                    height: p.height,
                    ..StreamInfo::default()
                }),
                Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
                Err(e) => log::info!("{e}"),
            }
        }
        let snapshot_uri = match profiles.first() {
            Some(p) => match self.snapshot_uri(&media_path, &p.token).await {
                Ok(u) => Some(u),
                Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
                Err(e) => {
                    log::info!("{e}");
                    None
                }
            },
            None => None,
        };
        Ok(Management { clock_offset_s, identity, media_path, profiles, streams, snapshot_uri })
    }
}

/// Default timeout for one SOAP exchange.
pub fn default_limits() -> Limits {
    Limits { timeout: Duration::from_secs(8), ..Limits::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_digest_matches_the_programmers_guide_example() {
        // ONVIF Application Programmer's Guide, section 6.1.1.3.
        let nonce = base64::engine::general_purpose::STANDARD.decode("LKqI6G/AikKCQrN0zqZFlg==").unwrap();
        assert_eq!(password_digest(&nonce, "2010-09-16T07:50:45Z", "userpassword"), "tuOSpGlFlIXsozq4HFNeeGeFLEI=");
        let h = username_token("admin", "userpassword", &nonce, "2010-09-16T07:50:45Z");
        assert!(h.contains(">tuOSpGlFlIXsozq4HFNeeGeFLEI=</wsse:Password>"), "{h}");
        assert!(h.contains(">LKqI6G/AikKCQrN0zqZFlg==</wsse:Nonce>"), "{h}");
        assert!(!h.contains("userpassword"));
    }

    #[test]
    fn created_and_device_time_round_trip() {
        assert_eq!(created_at(1_284_623_445), "2010-09-16T07:50:45Z");
        let xml = "<Envelope><Body><GetSystemDateAndTimeResponse><SystemDateAndTime><UTCDateTime>\
                   <Date><Year>2010</Year><Month>9</Month><Day>16</Day></Date>\
                   <Time><Hour>7</Hour><Minute>50</Minute><Second>45</Second></Time></UTCDateTime>\
                   </SystemDateAndTime></GetSystemDateAndTimeResponse></Body></Envelope>";
        assert_eq!(parse_device_time(&Doc::parse(xml).unwrap()), Some(1_284_623_445));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let bad = xml.replace("<Month>9</Month>", "<Month>13</Month>");
        assert_eq!(parse_device_time(&Doc::parse(&bad).unwrap()), None);
    }

    #[test]
    fn auth_faults_classify_as_auth() {
        let f = |sub: &str| OnvifError::Fault {
            target: "t".into(),
            action: "A",
            code: "env:Sender".into(),
            subcode: sub.into(),
            reason: String::new(),
        };
        assert_eq!(f("ter:NotAuthorized").class(), ErrorClass::Auth);
        assert_eq!(f("wsse:FailedAuthentication").class(), ErrorClass::Auth);
        assert_eq!(f("ter:ActionNotSupported").class(), ErrorClass::Fault);
    }
}
