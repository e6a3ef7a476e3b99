//! Every probe tier against one device, once, now (`device.probe`): reach, management (ONVIF or
//! ISAPI by driver), stream (DESCRIBE of each resolved stream, at most four) and a short sampled PLAY
//! of the first stream. Each tier reports its class and duration; a failed tier does not stop the
//! others, except that nothing authenticated is tried again after the credentials were refused.

use std::time::{Duration, Instant};

use super::http::{self, Limits};
use super::{hikvision, onvif, rtsp, DeviceSpec, Driver, ErrorClass, Identity, StreamInfo};

#[derive(Debug, Clone, PartialEq)]
pub struct TierOutcome {
    pub class: ErrorClass,
    pub duration: Duration,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FullProbe {
    pub reach: Option<TierOutcome>,
    pub reach_rtt_ms: Option<f64>,
    pub management: Option<TierOutcome>,
    pub identity: Option<Identity>,
    pub clock_offset_s: Option<i64>,
    pub snapshot_uri: Option<String>,
    pub health: Option<hikvision::Status>,
    pub hdds: Vec<hikvision::Hdd>,
    pub stream: Option<TierOutcome>,
    pub streams: Vec<StreamInfo>,
    pub sample: Option<TierOutcome>,
    pub measured: Option<rtsp::Sample>,
}

fn outcome(start: Instant, r: Result<(), (ErrorClass, String)>) -> TierOutcome {
    match r {
        Ok(()) => TierOutcome { class: ErrorClass::Ok, duration: start.elapsed(), error: None },
        Err((class, e)) => TierOutcome { class, duration: start.elapsed(), error: Some(e) },
    }
}

pub async fn run(spec: &DeviceSpec, limits: Limits, reach_timeout: Duration, window: Duration) -> FullProbe {
    let mut p = FullProbe::default();
    let start = Instant::now();
    let reach = http::connect(&spec.target, start + reach_timeout).await;
    if let Ok((_, rtt)) = &reach {
        p.reach_rtt_ms = Some((rtt.as_secs_f64() * 10_000.0).round() / 10.0);
    }
    let reached = reach.is_ok();
    p.reach = Some(outcome(start, reach.map(|_| ()).map_err(|e| (e.class(), e.to_string()))));
    if !reached {
        return p;
    }
    let mut auth_refused = false;
    let start = Instant::now();
    let management = match spec.driver {
        Driver::Onvif | Driver::Auto => {
            let mut c = onvif::Client::new(&spec.target, spec.credentials(), limits);
            match http::until(start + limits.timeout.saturating_mul(4), c.management(onvif::DEVICE_PATH)).await {
                None => Some(Err((ErrorClass::Timeout, "management round timed out".to_string()))),
                Some(Ok(m)) => {
                    p.identity = Some(m.identity);
                    p.clock_offset_s = Some(m.clock_offset_s);
                    p.snapshot_uri = m.snapshot_uri;
                    p.streams = m.streams;
                    Some(Ok(()))
                }
                Some(Err(e)) => Some(Err((e.class(), e.to_string()))),
            }
        }
        Driver::Hikvision => {
            let mut c = hikvision::Client::new(&spec.target, spec.credentials(), limits);
            let round = async {
                let identity = c.device_info().await?;
                let health = c.status().await?;
                let hdds = match c.storage().await {
                    Ok(h) => h,
                    Err(e) if e.class() == ErrorClass::Fault => Vec::new(),
                    Err(e) => return Err(e),
                };
                Ok::<_, hikvision::IsapiError>((identity, health, hdds))
            };
            match http::until(start + limits.timeout.saturating_mul(3), round).await {
                None => Some(Err((ErrorClass::Timeout, "management round timed out".to_string()))),
                Some(Ok((identity, health, hdds))) => {
                    p.identity = Some(identity);
                    p.health = Some(health);
                    p.hdds = hdds;
                    Some(Ok(()))
                }
                Some(Err(e)) => Some(Err((e.class(), e.to_string()))),
            }
        }
        Driver::Dahua | Driver::Rtsp | Driver::Reach => None,
    };
    if let Some(m) = management {
        auth_refused = matches!(&m, Err((ErrorClass::Auth, _)));
        p.management = Some(outcome(start, m));
    }
    if p.streams.is_empty() {
        if let Some(uri) = &spec.rtsp_uri {
            p.streams.push(StreamInfo { profile: "configured".into(), uri: uri.clone(), ..StreamInfo::default() });
        }
    }
    p.streams.truncate(4);
    if p.streams.is_empty() || auth_refused {
        return p;
    }
    let start = Instant::now();
    let mut worst: Result<(), (ErrorClass, String)> = Ok(());
    for s in &mut p.streams {
        match rtsp::describe(&s.uri, spec.credentials(), limits).await {
            Ok(v) => {
                s.codec = Some(v.codec).filter(|c| !c.is_empty()).or(s.codec.take());
                s.width = v.width.or(s.width);
                s.height = v.height.or(s.height);
                s.fps = v.fps.or(s.fps);
                s.class = Some(ErrorClass::Ok);
            }
            Err(e) => {
                s.class = Some(e.class());
                let auth = e.class() == ErrorClass::Auth;
                if worst.is_ok() {
                    worst = Err((e.class(), e.to_string()));
                }
                if auth {
                    auth_refused = true;
                    break;
                }
            }
        }
    }
    p.stream = Some(outcome(start, worst));
    if auth_refused {
        return p;
    }
    if let Some(first) = p.streams.first().map(|s| s.uri.clone()) {
        let start = Instant::now();
        let r = match rtsp::sample(&first, spec.credentials(), limits, window).await {
            Ok((_, m)) => {
                p.measured = Some(m);
                Ok(())
            }
            Err(e) => Err((e.class(), e.to_string())),
        };
        p.sample = Some(outcome(start, r));
    }
    p
}
