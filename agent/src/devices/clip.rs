//! Recording export from an NVR, streamed to a sink (the spool) chunk by chunk, never held in memory.
//!
//! * Hikvision ISAPI: `POST /ISAPI/ContentMgmt/search` (CMSearchDescription for track `{ch}01` and the
//!   time span) gives playback URIs; the first match is fetched with `GET /ISAPI/ContentMgmt/download`
//!   carrying a `downloadRequest` body.
//! * Dahua CGI: `GET /cgi-bin/loadfile.cgi?action=startLoad&channel=..&startTime=..&endTime=..` (the
//!   exact span); firmware without it (400/404/501) gets the file search instead: `mediaFileFind.cgi`
//!   factory.create, findFile (channel, span, `dav`), findNextFile, close, destroy, then the first
//!   file from `GET /cgi-bin/RPC_Loadfile<FilePath>` (the whole file, which may start before `from`).
//!   Dahua takes the device's local time; the request is sent in UTC, which matches devices set to UTC.
//! * ONVIF Profile G replay, the fallback for any recorder: the recording of the channel (the Nth
//!   recording GetRecordings lists, else FindRecordings on the search service), GetReplayUri, then an
//!   RTSP replay (`rtsp::replay`) written as an H.264 Annex-B elementary stream.

use std::time::Instant;

use super::http::Limits;
use super::onvif::{self, OnvifError};
use super::rtsp::{self, Replay, RtspError};
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
    #[error("device {device}: driver {driver:?} has no clip download")]
    Unsupported { device: String, driver: Driver },
    #[error("device {device}: ONVIF: {source}")]
    Onvif { device: String, source: OnvifError },
    #[error("device {device}: ONVIF replay: {source}")]
    Replay { device: String, source: RtspError },
    #[error("device {device}: no ONVIF {what} service (not a Profile G recorder)")]
    NoProfileG { device: String, what: &'static str },
    #[error("device {device}: no clip within the time allowed")]
    Timeout { device: String },
}

impl ClipError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ClipError::Vendor { source, .. } => source.class(),
            ClipError::Onvif { source, .. } => source.class(),
            ClipError::Replay { source, .. } => source.class(),
            ClipError::NoRecording { .. } | ClipError::Unsupported { .. } | ClipError::NoProfileG { .. } => ErrorClass::Fault,
            ClipError::Search { .. } => ErrorClass::Parse,
            ClipError::Timeout { .. } => ErrorClass::Timeout,
        }
    }
    /// The API is not there (404, 501, an answer in another protocol, no Profile G service): the next
    /// API may have the clip. Anything else (auth, down, no recording, too large) is the answer.
    fn unavailable(&self) -> bool {
        match self {
            ClipError::Vendor { source: VendorError::Status { status, .. }, .. } => matches!(status, 400 | 404 | 405 | 501),
            ClipError::Vendor { source: VendorError::TooLarge { .. } | VendorError::Sink { .. }, .. } => false,
            ClipError::Vendor { source, .. } => matches!(source.class(), ErrorClass::Parse | ErrorClass::Protocol),
            ClipError::Search { .. } | ClipError::NoProfileG { .. } | ClipError::Unsupported { .. } => true,
            ClipError::Onvif { source, .. } => {
                matches!(source.class(), ErrorClass::Fault | ErrorClass::Parse | ErrorClass::Protocol)
            }
            ClipError::Replay { .. } | ClipError::NoRecording { .. } | ClipError::Timeout { .. } => false,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// `isapi`, `dahua` (by time), `dahua-file` (mediaFileFind + RPC_Loadfile) or `onvif` (replay).
    pub method: &'static str,
    pub bytes: u64,
    pub content_type: Option<String>,
    /// Recordings the search matched (ISAPI); the first is exported.
    pub matches: usize,
    pub playback_uri: Option<String>,
    /// What the ONVIF replay wrote and why it stopped.
    pub replay: Option<Replay>,
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

/// Streams the clip into `sink` within `deadline`, trying the driver's APIs in order (vendor first,
/// ONVIF replay last) while the previous one is unavailable and nothing has been written.
pub async fn export(
    spec: &DeviceSpec,
    req: ClipRequest,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Clip, ClipError> {
    // The vendor download first (the recorder's own file, with audio), ONVIF replay as the fallback.
    let methods: &[&str] = match spec.driver {
        Driver::Hikvision => &["isapi", "onvif"],
        Driver::Dahua => &["dahua", "onvif"],
        Driver::Onvif => &["onvif"],
        Driver::Auto | Driver::Reach => &["isapi", "dahua", "onvif"],
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
                "dahua" => dahua(spec, req, deadline, &mut counted).await,
                _ => onvif_replay(spec, req, deadline, &mut counted).await,
            }
        })
        .await
        .unwrap_or(Err(ClipError::Timeout { device: spec.id.clone() }));
        match r {
            Ok(c) => return Ok(c),
            // Only an API that is not there sends us to the next one: an API that answers (no
            // recording, refused credentials, too large) has given the answer, and a half-written
            // download is never followed by another one.
            Err(e) if written.get() > 0 || !e.unavailable() => return Err(e),
            Err(e) => {
                log::info!("clip export via {m} ({}): {e}", e.class().as_str());
                last = Some(e);
            }
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
        replay: None,
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
    match c.download(&Call { method: "GET", path: &path, content_type: None, body: &[] }, req.max_bytes, deadline, sink).await {
        Ok((head, bytes)) => Ok(Clip {
            method: "dahua",
            bytes,
            content_type: head.header("content-type").map(str::to_owned),
            matches: 1,
            playback_uri: None,
            replay: None,
        }),
        // Older firmware lacks the download by time (and some answer 404 for "no data"): the file
        // search tells both apart.
        Err(VendorError::Status { status: 400 | 404 | 501, .. }) => dahua_file(spec, &mut c, req, deadline, sink).await,
        Err(source) => Err(ClipError::Vendor { device: spec.id.clone(), source }),
    }
}

const MEDIA_FIND: &str = "/cgi-bin/mediaFileFind.cgi";

/// One `mediaFileFind.cgi` call; the `key=value` answer as text.
async fn dahua_cgi(spec: &DeviceSpec, c: &mut vendor_http::Client<'_>, query: &str) -> Result<String, ClipError> {
    let path = format!("{MEDIA_FIND}?{query}");
    let verr = |source| ClipError::Vendor { device: spec.id.clone(), source };
    let resp = c.request("GET", &path, None, &[]).await.map_err(verr)?;
    if resp.status != 200 {
        return Err(verr(VendorError::Status { target: spec.target.clone(), path, status: resp.status }));
    }
    Ok(resp.body_str().to_owned())
}

/// File search: `(FilePath, Length)` of the files of the channel overlapping the span.
async fn dahua_find(
    spec: &DeviceSpec,
    c: &mut vendor_http::Client<'_>,
    object: &str,
    req: &ClipRequest,
) -> Result<Vec<(String, Option<u64>)>, ClipError> {
    let find = format!(
        "action=findFile&object={object}&condition.Channel={}&condition.StartTime={}&condition.EndTime={}&condition.Types[0]=dav",
        req.channel,
        dahua_time(req.from_ms),
        dahua_time(req.to_ms)
    );
    match dahua_cgi(spec, c, &find).await {
        Ok(_) => {}
        // Firmware answers findFile with an error when nothing matches.
        Err(ClipError::Vendor { source: VendorError::Status { status: 400, .. }, .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let text = dahua_cgi(spec, c, &format!("action=findNextFile&object={object}&count=16")).await?;
    let kv = super::dahua::parse_kv(&text);
    let files = (0..16)
        .map_while(|i| {
            let path = super::dahua::value(&kv, &format!("items[{i}].FilePath"))?;
            let len = super::dahua::value(&kv, &format!("items[{i}].Length")).and_then(|l| l.parse().ok());
            Some((path.to_owned(), len))
        })
        .collect();
    Ok(files)
}

async fn dahua_file(
    spec: &DeviceSpec,
    c: &mut vendor_http::Client<'_>,
    req: ClipRequest,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Clip, ClipError> {
    let created = dahua_cgi(spec, c, "action=factory.create").await?;
    let object = super::dahua::value(&super::dahua::parse_kv(&created), "result")
        .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_owned)
        .ok_or_else(|| ClipError::Search { device: spec.id.clone(), what: "factory.create gave no object id".into() })?;
    let found = dahua_find(spec, c, &object, &req).await;
    // The finder holds a slot on the recorder until destroyed, whatever the search gave.
    for action in ["close", "destroy"] {
        if let Err(e) = dahua_cgi(spec, c, &format!("action={action}&object={object}")).await {
            log::info!("{e}");
        }
    }
    let found = found?;
    let Some((file, len)) = found.first().cloned() else {
        return Err(ClipError::NoRecording {
            device: spec.id.clone(),
            channel: req.channel,
            from: isapi_time(req.from_ms),
            to: isapi_time(req.to_ms),
        });
    };
    if len.is_some_and(|l| l > req.max_bytes) {
        let path = file.clone();
        let source = VendorError::TooLarge { target: spec.target.clone(), path, limit: req.max_bytes };
        return Err(ClipError::Vendor { device: spec.id.clone(), source });
    }
    let path = format!("/cgi-bin/RPC_Loadfile{}", file.replace(' ', "%20"));
    let (head, bytes) = c
        .download(&Call { method: "GET", path: &path, content_type: None, body: &[] }, req.max_bytes, deadline, sink)
        .await
        .map_err(|source| ClipError::Vendor { device: spec.id.clone(), source })?;
    Ok(Clip {
        method: "dahua-file",
        bytes,
        content_type: head.header("content-type").map(str::to_owned),
        matches: found.len(),
        playback_uri: Some(file),
        replay: None,
    })
}

/// ONVIF Profile G: the channel's recording, its replay URI, and the replay itself.
async fn onvif_replay(
    spec: &DeviceSpec,
    req: ClipRequest,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Clip, ClipError> {
    let oerr = |source| ClipError::Onvif { device: spec.id.clone(), source };
    let mut c = onvif::Client::new(&spec.target, spec.credentials(), onvif::default_limits());
    c.sync_clock(onvif::DEVICE_PATH).await.map_err(oerr)?;
    let g = c.profile_g(onvif::DEVICE_PATH).await.map_err(oerr)?;
    let replay = g.replay.clone().ok_or_else(|| ClipError::NoProfileG { device: spec.id.clone(), what: "replay" })?;
    // ONVIF has no channel numbers: channel N is the Nth recording in the device's own order, as
    // recorders list one recording per camera input.
    let tokens = match (&g.recording, &g.search) {
        (Some(r), _) => c.recording_tokens(r).await.map_err(oerr)?,
        (None, Some(s)) => c.find_recordings(s).await.map_err(oerr)?,
        (None, None) => return Err(ClipError::NoProfileG { device: spec.id.clone(), what: "recording or search" }),
    };
    let Some(token) = tokens.get((req.channel as usize).saturating_sub(1)) else {
        return Err(ClipError::NoRecording {
            device: spec.id.clone(),
            channel: req.channel,
            from: isapi_time(req.from_ms),
            to: isapi_time(req.to_ms),
        });
    };
    let uri = c.replay_uri(&replay, token).await.map_err(oerr)?;
    // Stop streaming a little before the export's deadline so the replay ends by itself (TEARDOWN,
    // a clip marked as cut short) rather than being dropped by it.
    let stream_deadline = deadline.checked_sub(std::time::Duration::from_secs(3)).unwrap_or(deadline);
    let r = rtsp::replay(
        &uri,
        spec.credentials(),
        onvif::default_limits(),
        (req.from_ms, req.to_ms),
        req.max_bytes,
        stream_deadline,
        sink,
    )
    .await
    .map_err(|source| match source {
        // The server accepted the range and sent nothing in it.
        RtspError::NoFrames { .. } | RtspError::Status { status: 457, .. } => ClipError::NoRecording {
            device: spec.id.clone(),
            channel: req.channel,
            from: isapi_time(req.from_ms),
            to: isapi_time(req.to_ms),
        },
        source => ClipError::Replay { device: spec.id.clone(), source },
    })?;
    Ok(Clip {
        method: "onvif",
        bytes: r.bytes,
        content_type: Some("video/h264".into()),
        matches: tokens.len(),
        playback_uri: Some(uri),
        replay: Some(r),
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
