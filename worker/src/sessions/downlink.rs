//! The downlink between a gateway's Durable Object and the shims that bridge it to MQTT, as pure rules.
//!
//! A shim that sees a gateway online (a status it verified) long-polls
//! `POST /v1/gateways/{id}/downlink?bridge=B&resend=K&wait=S`; the answer is the ingest body's format, a
//! CBOR array of `[topic, payload]`, each payload a COSE_Sign1 the object signed for that topic, which
//! the shim publishes unchanged (QoS 1). Several shims may poll one gateway: the object hands commands
//! only to the bridge holding the gateway's lease (the last one to be served, renewed by each poll,
//! lost after [`LEASE_MS`] without one), so each command goes out once and in order; the others wait
//! and get empty answers until the holder goes quiet. `resend` is the gateway's connection, the
//! `boot:ts` of the status that announced it: the first poll naming a new one also re-sends delivered
//! but unacknowledged commands and pending cancels, once per connection however many shims ask.

use scs_protocol::topics::topic;
use scs_protocol::{encode, CommandCancel, CommandRequest, TopicKind, UploadGrant, PROTOCOL_VERSION};

use super::store::CommandRow;
use super::value_json::json_to_value;

/// A bridge that has not polled for this long loses the gateway's lease.
pub const LEASE_MS: i64 = 30_000;
/// Longest a poll is held open (the shim asks for less).
pub const MAX_WAIT_MS: i64 = 25_000;

/// Which bridge delivers a gateway's commands.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lease {
    holder: Option<(String, i64)>,
}

impl Lease {
    /// May `bridge`, polling at `now`, be handed commands? Takes or renews the lease when it may.
    pub fn claim(&mut self, bridge: &str, now: i64) -> bool {
        match &self.holder {
            Some((b, until)) if b != bridge && *until > now => false,
            _ => {
                self.holder = Some((bridge.to_owned(), now + LEASE_MS));
                true
            }
        }
    }

    /// The holder's poll ended at `now`; its lease runs from here.
    pub fn renew(&mut self, bridge: &str, now: i64) {
        if let Some((b, until)) = &mut self.holder {
            if b == bridge {
                *until = now + LEASE_MS;
            }
        }
    }
}

/// Whether a poll naming connection `key` triggers the re-send (`last` is the last one that did).
pub fn is_new_connection(last: Option<&str>, key: Option<&str>) -> bool {
    matches!(key, Some(k) if !k.is_empty() && last != Some(k))
}

/// The wire request for a stored command.
pub fn request_for(row: &CommandRow, upload: Option<UploadGrant>) -> CommandRequest {
    CommandRequest {
        v: PROTOCOL_VERSION,
        id: row.id.clone(),
        command_type: row.command_type.clone(),
        params: json_to_value(&row.params),
        issued: u64::try_from(row.created_at).unwrap_or(0),
        expires: u64::try_from(row.expires_at).unwrap_or(0),
        timeout_secs: row.timeout_secs,
        confirm: row.confirm,
        upload,
        requested_by: Some(row.requested_by.chars().take(64).collect()),
        target: row.target.clone(),
    }
}

/// Topic and unsigned payload of a command.
pub fn command_message(row: &CommandRow, upload: Option<UploadGrant>) -> (String, Vec<u8>) {
    (topic(&row.gateway_id, TopicKind::Command), encode(&request_for(row, upload)))
}

/// Topic and unsigned payload of a cancel.
pub fn cancel_message(gateway: &str, id: &str) -> (String, Vec<u8>) {
    (topic(gateway, TopicKind::Cancel), encode(&CommandCancel { v: PROTOCOL_VERSION, id: id.to_owned() }))
}

/// A poll's answer: a CBOR array of `[topic, payload]`.
pub fn encode_messages(messages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = e.array(messages.len() as u64);
    for (t, p) in messages {
        let _ = e.array(2).and_then(|e| e.str(t)).and_then(|e| e.bytes(p));
    }
    e.into_writer()
}

/// The `wait` a shim asked for, in ms, clamped to `0..=MAX_WAIT_MS`.
pub fn wait_ms(query: Option<&str>) -> i64 {
    query.and_then(|w| w.parse::<i64>().ok()).map_or(MAX_WAIT_MS, |s| s.saturating_mul(1000)).clamp(0, MAX_WAIT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bridge_holds_the_lease_until_it_goes_quiet() {
        let mut l = Lease::default();
        assert!(l.claim("a", 0));
        assert!(!l.claim("b", 1000), "another bridge waits while the holder polls");
        l.renew("a", 20_000);
        assert!(!l.claim("b", 40_000));
        assert!(l.claim("a", 40_000));
        assert!(l.claim("b", 40_000 + LEASE_MS + 1), "a quiet holder loses it");
        assert!(!l.claim("a", 40_000 + LEASE_MS + 2));
    }

    #[test]
    fn resend_once_per_connection() {
        assert!(is_new_connection(None, Some("1:2")));
        assert!(!is_new_connection(Some("1:2"), Some("1:2")));
        assert!(is_new_connection(Some("1:2"), Some("1:3")));
        assert!(!is_new_connection(None, None));
        assert!(!is_new_connection(None, Some("")));
    }

    #[test]
    fn wait_is_clamped() {
        assert_eq!(wait_ms(Some("5")), 5000);
        assert_eq!(wait_ms(Some("999")), MAX_WAIT_MS);
        assert_eq!(wait_ms(Some("-1")), 0);
        assert_eq!(wait_ms(None), MAX_WAIT_MS);
    }
}
