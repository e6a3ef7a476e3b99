//! Recording export from an NVR, streamed to a sink (the spool) chunk by chunk, never held in memory.
//!
//! * Hikvision ISAPI: `POST /ISAPI/ContentMgmt/search` (CMSearchDescription for track `{ch}01` and the
//!   time span) gives playback URIs; the first match is fetched with `GET /ISAPI/ContentMgmt/download`
//!   carrying a `downloadRequest` body.
//! * Dahua CGI: `GET /cgi-bin/loadfile.cgi?action=startLoad&channel=..&startTime=..&endTime=..`.
//!   Dahua takes the device's local time; the request is sent in UTC, which matches devices set to UTC.
//!
//! ONVIF replay (Profile G over RTSP) is not implemented: ONVIF-only recorders get a clear error.

use std::time::Instant;

use super::http::Limits;
use super::vendor_http::{self, Call, VendorError};
use super::xml::{escape, Doc};
use super::{DeviceSpec, Driver, ErrorClass};

/// Longest clip one command exports.
pub const MAX_SPAN_MS: u64 = 900_000;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("device {device}: {source}")]
    Vendor { device: String, source: VendorError },
    #[error("device {device}: no recording of channel {channel} between {from} and {to}")]
    NoRecording { device: String, channel: u32, from: String, to: String },
    #[error("device {device}: search answer unusable: {what}")]
    Search { device: String, what: String },
    #[error("device {device}: driver {driver:?} has no clip download (ONVIF replay is not supported)")]
    Unsupported { device: String, driver: Driver },
    #[error("device {device}: no clip within the time allowed")]
    Timeout { device: String },
}

impl ClipError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ClipError::Vendor { source, .. } => source.class(),
            ClipError::NoRecording { .. } | ClipError::Unsupported { .. } => ErrorClass::Fault,
            ClipError::Search { .. } => ErrorClass::Parse,
            ClipError::Timeout { .. } => ErrorClass::Timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipRequest {
    pub channel: u32,
    pub from_ms: u64,
    pub to_ms: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// `isapi` or `dahua`.
    pub method: &'static str,
    pub bytes: u64,
    pub content_type: Option<String>,
    /// Recordings the search matched (ISAPI); the first is exported.
    pub matches: usize,
    pub playback_uri: Option<String>,
}

/// Parses `from`/`to`: milliseconds since the epoch, or RFC 3339 (`Z` or `±hh:mm`, optional fraction).
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (time, offset_s) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at_checked(i)?;
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off.get(1..)?.split_once(':')?;
        (t, sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60))
    };
    let mut t = time.split(':');
    let (h, mi) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec_text = t.next()?;
    let (whole, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let sec = whole.parse::<i64>().ok()?;
    let ms = frac.get(..frac.len().min(3)).map_or(0, |f| format!("{f:0<3}").parse::<i64>().unwrap_or(0));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let secs = super::onvif::days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + ms).ok()
}

/// Streams the clip into `sink` within `deadline`. Falls back from one API to the next only while
/// nothing has been written, so a half-written download is never followed by another one.
pub async fn export(
    spec: &DeviceSpec,
    req: ClipRequest,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Clip, ClipError> {
    let methods: &[&str] = match spec.driver {
        Driver::Hikvision => &["isapi"],
        Driver::Dahua => &["dahua"],
        Driver::Auto | Driver::Onvif | Driver::Reach => &["isapi", "dahua"],
        Driver::Rtsp => return Err(ClipError::Unsupported { device: spec.id.clone(), driver: spec.driver }),
    };
    let written = std::cell::Cell::new(0u64);
    let mut counted = |b: &[u8]| {
        written.set(written.get() + b.len() as u64);
        sink(b)
    };
    let mut last = None;
    for m in methods {
        let r = super::http::until(deadline, async {
            match *m {
                "isapi" => isapi(spec, req, deadline, &mut counted).await,
                _ => dahua(spec, req, deadline, &mut counted).await,
            }
        })
        .await
        .unwrap_or(Err(ClipError::Timeout { device: spec.id.clone() }));
        match r {
            Ok(c) => return Ok(c),
            Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
            Err(e) => {
                log::info!("clip export via {m}: {e}");
                last = Some(e);
            }
        }
        if written.get() > 0 {
            break;
        }
    }
    Err(last.unwrap_or(ClipError::Unsupported { device: spec.id.clone(), driver: spec.driver }))
}

fn isapi_time(ms: u64) -> String {
    super::onvif::created_at((ms / 1000) as i64)
}

/// The CMSearchDescription for one channel's main track and a time span.
pub fn isapi_search_body(search_id: &str, req: &ClipRequest) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CMSearchDescription version=\"2.0\" xmlns=\"http://www.isapi.org/ver20/XMLSchema\">\
         <searchID>{search_id}</searchID><trackList><trackID>{}01</trackID></trackList><timeSpanList><timeSpan>\
         <startTime>{}</startTime><endTime>{}</endTime></timeSpan></timeSpanList><maxResults>40</maxResults>\
         <searchResultPostion>0</searchResultPostion><metadataList><metadataDescriptor>//recordType.meta.std-cgi.com</metadataDescriptor>\
         </metadataList></CMSearchDescription>",
        req.channel,
        isapi_time(req.from_ms),
        isapi_time(req.to_ms)
    )
}

async fn isapi(
    spec: &DeviceSpec,
    req: ClipRequest,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Clip, ClipError> {
    let verr = |source| ClipError::Vendor { device: spec.id.clone(), source };
    let serr = |what: String| ClipError::Search { device: spec.id.clone(), what };
    let mut c = vendor_http::Client::new(&spec.target, spec.credentials(), Limits::default());
    const SEARCH: &str = "/ISAPI/ContentMgmt/search";
    let id = super::wsdiscovery::new_message_id().map_err(|e| serr(e.to_string()))?;
    let search_id = id.trim_start_matches("urn:uuid:").to_ascii_uppercase();
    let body = isapi_search_body(&search_id, &req);
    let resp = c.request("POST", SEARCH, Some("application/xml"), body.as_bytes()).await.map_err(verr)?;
    if resp.status != 200 {
        return Err(verr(VendorError::Status { target: spec.target.clone(), path: SEARCH.into(), status: resp.status }));
    }
    let doc = Doc::parse(resp.body_str()).map_err(|e| serr(e.to_string()))?;
    let uris: Vec<String> = doc.find("playbackURI").iter().map(|e| e.text()).filter(|u| !u.is_empty()).collect();
    let Some(uri) = uris.first().cloned() else {
        return Err(ClipError::NoRecording {
            device: spec.id.clone(),
            channel: req.channel,
            from: isapi_time(req.from_ms),
            to: isapi_time(req.to_ms),
        });
    };
    const DOWNLOAD: &str = "/ISAPI/ContentMgmt/download";
    let dl = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><downloadRequest version=\"1.0\" xmlns=\"http://www.isapi.org/ver20/XMLSchema\">\
         <playbackURI>{}</playbackURI></downloadRequest>",
        escape(&uri)
    );
    let call = Call { method: "GET", path: DOWNLOAD, content_type: Some("application/xml"), body: dl.as_bytes() };
    let (head, bytes) = c.download(&call, req.max_bytes, deadline, sink).await.map_err(verr)?;
    Ok(Clip {
        method: "isapi",
        bytes,
        content_type: head.header("content-type").map(str::to_owned),
        matches: uris.len(),
        playback_uri: Some(uri),
    })
}

/// `YYYY-MM-DD%20HH:MM:SS` as Dahua's CGI takes it.
fn dahua_time(ms: u64) -> String {
    isapi_time(ms).trim_end_matches('Z').replacen('T', "%20", 1)
}

pub fn dahua_path(req: &ClipRequest) -> String {
    format!(
        "/cgi-bin/loadfile.cgi?action=startLoad&channel={}&startTime={}&endTime={}&subtype=0",
        req.channel,
        dahua_time(req.from_ms),
        dahua_time(req.to_ms)
    )
}

async fn dahua(
    spec: &DeviceSpec,
    req: ClipRequest,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Clip, ClipError> {
    let mut c = vendor_http::Client::new(&spec.target, spec.credentials(), Limits::default());
    let path = dahua_path(&req);
    let (head, bytes) = c
        .download(&Call { method: "GET", path: &path, content_type: None, body: &[] }, req.max_bytes, deadline, sink)
        .await
        .map_err(|source| ClipError::Vendor { device: spec.id.clone(), source })?;
    Ok(Clip {
        method: "dahua",
        bytes,
        content_type: head.header("content-type").map(str::to_owned),
        matches: 1,
        playback_uri: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_both_forms() {
        assert_eq!(parse_time_ms("1765015200000"), Some(1_765_015_200_000));
        assert_eq!(parse_time_ms("2025-12-06T10:00:00Z"), Some(1_765_015_200_000));
        assert_eq!(parse_time_ms("2025-12-06T11:00:00+01:00"), Some(1_765_015_200_000));
        assert_eq!(parse_time_ms("2025-12-06T10:00:00.25Z"), Some(1_765_015_200_250));
        assert_eq!(parse_time_ms("2025-13-06T10:00:00Z"), None);
        assert_eq!(parse_time_ms("yesterday"), None);
        assert_eq!(parse_time_ms(""), None);
    }

    #[test]
    fn vendor_requests_name_the_channel_and_span() {
        let r = ClipRequest { channel: 3, from_ms: 1_765_015_200_000, to_ms: 1_765_015_260_000, max_bytes: 1 };
        let b = isapi_search_body("ABC", &r);
        assert!(b.contains("<trackID>301</trackID>"), "{b}");
        assert!(b.contains("<startTime>2025-12-06T10:00:00Z</startTime><endTime>2025-12-06T10:01:00Z</endTime>"), "{b}");
        assert!(Doc::parse(&b).is_ok());
        assert_eq!(
            dahua_path(&r),
            "/cgi-bin/loadfile.cgi?action=startLoad&channel=3&startTime=2025-12-06%2010:00:00&endTime=2025-12-06%2010:01:00&subtype=0"
        );
    }
}
