//! The broker address in `mqtt://host:port` / `mqtts://host:port` form, shared by the config and the
//! provisioned identity.

/// A parsed `mqtt://` / `mqtts://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!("broker URL {url:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| format!("broker URL {url:?}: unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("broker URL {url:?}: bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("broker URL {url:?}: junk after host")),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| format!("broker URL {url:?}: bad port"))?),
                None => (rest.to_owned(), default_port),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("broker URL {url:?}: missing or invalid host"));
        }
        Ok(BrokerUrl { tls, host, port })
    }
}
