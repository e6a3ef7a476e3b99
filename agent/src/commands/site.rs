//! Site commands on the gateway: `site.discover` (/32774/0/1) sends a WS-Discovery Probe for
//! NetworkVideoTransmitter to each given address (unicast, all at once) and returns every device
//! found, de-duplicated by endpoint reference; with `credentialsFrom` it also reads each device's
//! identity over ONVIF. `site.adopt` (/32774/0/2) adds a device to the gateway (`devices/site.rs`).
//!
//! Credentials never travel in a command (the cloud stores and shows command parameters):
//! `credentialsFrom` names a configured device whose username and password are used.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use scs_protocol::Value;

use super::{CommandError, Job, Output};
use crate::config::DeviceConfig;
use crate::devices::site::Adoption;
use crate::devices::wsdiscovery::{self, Dialect, Match};
use crate::devices::{onvif, Credentials, Identity};

pub const DISCOVER: &str = "site.discover";
pub const ADOPT: &str = "site.adopt";

/// `host` or `host:port` (default 3702) to a socket address, resolved within a second.
fn resolve(address: &str) -> Result<SocketAddr, String> {
    let d = DeviceConfig { address: Some(address.to_owned()), port: Some(wsdiscovery::PORT), ..DeviceConfig::default() };
    let target = d.probe_target().ok_or_else(|| format!("{address:?} is not host or host:port"))?;
    let addrs = crate::net_probe::resolve(&target, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    addrs.into_iter().next().ok_or_else(|| format!("{address}: no address"))
}

fn credentials_from(job: &Job) -> Result<Option<DeviceConfig>, CommandError> {
    let Some(from) = job.str("credentialsFrom") else { return Ok(None) };
    job.ctx
        .site
        .find(from)
        .map(Some)
        .ok_or_else(|| CommandError::Failed(format!("credentialsFrom names {from}, which is not a device of this gateway")))
}

/// GetDeviceInformation on the first XAddr that answers (the first may be a dead interface).
async fn identify(m: &Match, creds: Credentials<'_>) -> Result<Identity, String> {
    let mut last = String::from("no usable http XAddr");
    for x in &m.xaddrs {
        let Some((target, path)) = crate::devices::http::split_url(x, 80) else { continue };
        let limits = crate::devices::http::Limits { timeout: Duration::from_secs(3), ..onvif::default_limits() };
        let mut c = onvif::Client::new(&target, Some(creds), limits);
        let r = async {
            c.sync_clock(&path).await?;
            c.device_information(&path).await
        };
        match r.await {
            Ok(id) => return Ok(id),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

pub fn discover(job: &Job) -> Result<Output, CommandError> {
    let timeout = Duration::from_millis(job.int("timeoutMs").map_or(2000, |v| v.clamp(100, 10_000) as u64));
    let addresses: Vec<String> = job
        .params
        .get("addresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let source = credentials_from(job)?;
    let creds =
        source.as_ref().and_then(|d| Some(Credentials { user: d.username.as_deref()?, pass: d.password.as_ref()?.expose() }));
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    for a in &addresses {
        match resolve(a) {
            Ok(s) => targets.push(s),
            Err(e) => errors.push(Value::Text(e)),
        }
    }
    // No addresses: a commissioning scan, by multicast on the LAN out of `interface` (TTL 1 keeps
    // it on the site's segment).
    let multicast = addresses.is_empty();
    let iface = match job.params.get("interface").and_then(Value::as_str) {
        Some(i) => i.parse::<std::net::Ipv4Addr>().map_err(|e| CommandError::Failed(format!("interface {i:?}: {e}")))?,
        None => std::net::Ipv4Addr::UNSPECIFIED,
    };
    let group = SocketAddr::from((wsdiscovery::MULTICAST_V4, wsdiscovery::PORT));
    let ex = Rc::new(smol::LocalExecutor::new());
    let found: Vec<(SocketAddr, Result<Vec<Match>, String>)> = if multicast {
        let r = smol::block_on(wsdiscovery::multicast_probe(iface, 1, timeout));
        vec![(group, r.map_err(|e| format!("{}: {e}", e.class().as_str())))]
    } else {
        smol::block_on(ex.run(async {
            // Both dialects to every address: ONVIF devices answer the 2005/04 draft, newer stacks only 2009/01.
            let tasks: Vec<_> = targets
                .iter()
                .flat_map(|&addr| [(addr, Dialect::V2005), (addr, Dialect::V2009)])
                .map(|(addr, dialect)| {
                    ex.spawn(async move {
                        let r = wsdiscovery::unicast_probe(addr, dialect, timeout).await;
                        (addr, r.map_err(|e| format!("{}: {e}", e.class().as_str())))
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            out
        }))
    };
    let mut matches = Vec::new();
    let mut answered = Vec::new();
    let mut failures = Vec::new();
    for (addr, r) in found {
        match r {
            Ok(m) => {
                answered.push(addr);
                matches.extend(m.into_iter().map(|m| (addr, m)));
            }
            Err(e) => failures.push((addr, e)),
        }
    }
    // An address is in error only when neither dialect got an answer.
    for (addr, e) in failures {
        if !answered.contains(&addr) {
            errors.push(Value::Text(e));
        }
    }
    errors.dedup();
    let mut seen: Vec<(SocketAddr, Match)> = Vec::new();
    for (addr, m) in matches {
        if let Some((_, o)) = seen.iter_mut().find(|(_, o)| o.endpoint == m.endpoint) {
            *o = wsdiscovery::dedupe(vec![o.clone(), m]).into_iter().next().unwrap_or_default();
        } else {
            seen.push((addr, m));
        }
    }
    let mut devices = Vec::new();
    for (addr, m) in &seen {
        if job.should_stop() {
            return Err(CommandError::Stopped);
        }
        let words = |v: &[String]| Value::Array(v.iter().take(32).map(|s| Value::Text(s.chars().take(256).collect())).collect());
        // A multicast answer's device is where its first service address points.
        let address = if multicast { xaddr_host(&m.xaddrs).unwrap_or_else(|| addr.to_string()) } else { addr.to_string() };
        let mut d = vec![
            ("address", Value::Text(address)),
            ("endpoint", Value::Text(m.endpoint.clone())),
            ("xaddrs", words(&m.xaddrs)),
            ("scopes", words(&m.scopes)),
            ("types", words(&m.types)),
        ];
        if let Some(v) = m.metadata_version {
            d.push(("metadataVersion", Value::from(u64::from(v))));
        }
        if let Some(c) = creds {
            match smol::block_on(identify(m, c)) {
                Ok(id) => d.push((
                    "identity",
                    Value::map([
                        ("manufacturer", Value::Text(id.manufacturer)),
                        ("model", Value::Text(id.model)),
                        ("firmwareVersion", Value::Text(id.firmware)),
                        ("serialNumber", Value::Text(id.serial)),
                    ]),
                )),
                Err(e) => d.push(("identityError", Value::Text(e.chars().take(300).collect()))),
            }
        }
        devices.push(Value::map(d));
    }
    Ok(Output::value(Value::map([
        ("devices", Value::Array(devices)),
        ("probed", Value::from(addresses.len() as u64)),
        ("mode", Value::Text(if multicast { "multicast" } else { "unicast" }.into())),
        ("errors", Value::Array(errors)),
    ])))
}

/// `host:port` of the first XAddr (`http://10.0.0.5:8080/onvif/device_service` -> `10.0.0.5:8080`).
fn xaddr_host(xaddrs: &[String]) -> Option<String> {
    let x = xaddrs.first()?;
    let rest = x.split_once("://")?.1;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    Some(if host.contains(':') { host.to_owned() } else { format!("{host}:80") })
}

pub fn adopt(job: &Job) -> Result<Output, CommandError> {
    let a = Adoption {
        id: job.require_str("id")?.to_owned(),
        device_type: job.require_str("type")?.to_owned(),
        address: job.require_str("address")?.to_owned(),
        driver: job.str("driver").unwrap_or("onvif").to_owned(),
        name: job.str("name").map(str::to_owned),
        credentials_from: job.str("credentialsFrom").map(str::to_owned),
    };
    let d = job.ctx.site.adopt(&job.ctx.db_path(), &a)?;
    log::info!("device {} ({}) at {} adopted (command {})", d.id, d.device_type, a.address, job.id);
    Ok(Output::value(Value::map([
        ("id", Value::Text(d.id)),
        ("type", Value::Text(d.device_type)),
        ("address", Value::Text(a.address)),
        ("driver", Value::Text(a.driver)),
        ("credentials", Value::Bool(d.password.is_some())),
        ("adopted", Value::Bool(true)),
    ])))
}

#[cfg(test)]
mod xaddr_tests {
    use super::xaddr_host;

    #[test]
    fn a_multicast_answer_is_addressed_by_its_first_service_address() {
        let x = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            xaddr_host(&x(&["http://10.0.0.5:8080/onvif/device_service", "http://[fe80::1]/x"])).as_deref(),
            Some("10.0.0.5:8080")
        );
        assert_eq!(xaddr_host(&x(&["http://10.0.0.6/onvif/device_service"])).as_deref(), Some("10.0.0.6:80"));
        assert_eq!(xaddr_host(&x(&["not a url"])), None);
        assert_eq!(xaddr_host(&[]), None);
    }
}
