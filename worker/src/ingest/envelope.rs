//! The Queue message: a CBOR array of entries, each a checked message or a counted rejection, packed
//! under the Queue's per-message limit. Only checked messages enter the Queue, so the consumer decodes
//! them again but never verifies signatures again.
//!
//! ```text
//! message = [* entry]
//! entry   = [0, topic: tstr, inner: bstr, received_at: int]               ; valid, signature checked
//!         / [1, gateway: tstr, reason: tstr, error: tstr, topic: tstr, at: int] ; rejected, to count
//! ```

use thiserror::Error;

/// Queue messages stay under this (Cloudflare's limit is 128 KB per message).
pub const MAX_MESSAGE_BYTES: usize = 120 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Valid { topic: String, inner: Vec<u8>, received_at: i64 },
    Rejected { gateway: String, reason: String, error: String, topic: String, at: i64 },
}

impl Entry {
    /// Upper bound of the entry's encoded size.
    pub fn size(&self) -> usize {
        match self {
            Entry::Valid { topic, inner, .. } => topic.len() + inner.len() + 32,
            Entry::Rejected { gateway, reason, error, topic, .. } => {
                gateway.len() + reason.len() + error.len() + topic.len() + 48
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("queue message is not an entry array: {source}")]
    Cbor {
        #[source]
        source: minicbor::decode::Error,
    },
    #[error("queue message: {0}")]
    Shape(&'static str),
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = e.array(entries.len() as u64);
    for entry in entries {
        let _ = match entry {
            Entry::Valid { topic, inner, received_at } => e
                .array(4)
                .and_then(|e| e.u8(0))
                .and_then(|e| e.str(topic))
                .and_then(|e| e.bytes(inner))
                .and_then(|e| e.i64(*received_at)),
            Entry::Rejected { gateway, reason, error, topic, at } => e
                .array(6)
                .and_then(|e| e.u8(1))
                .and_then(|e| e.str(gateway))
                .and_then(|e| e.str(reason))
                .and_then(|e| e.str(error))
                .and_then(|e| e.str(topic))
                .and_then(|e| e.i64(*at)),
        };
    }
    e.into_writer()
}

impl Entry {
    /// Whether the ingest request writes this entry itself instead of queueing it: entries over the
    /// Queue's message limit, and command updates. An operator waits on a command's state, and the
    /// Queue's batching (up to `max_batch_timeout`) per update would make every round trip seconds long;
    /// updates are small and few, so writing them in the request costs D1 little.
    pub fn direct(&self) -> bool {
        match self {
            Entry::Valid { topic, .. } => {
                self.size() + 16 > MAX_MESSAGE_BYTES
                    || scs_protocol::topics::Topic::parse(topic).is_ok_and(|t| t.kind == scs_protocol::TopicKind::CommandUpdate)
            }
            Entry::Rejected { .. } => self.size() + 16 > MAX_MESSAGE_BYTES,
        }
    }
}

/// Packs entries into as few Queue messages as fit [`MAX_MESSAGE_BYTES`]. Entries that are
/// [`Entry::direct`] are returned apart: they go to D1 directly instead of through the Queue.
pub fn pack(entries: Vec<Entry>) -> (Vec<Vec<u8>>, Vec<Entry>) {
    let (mut messages, mut direct) = (Vec::new(), Vec::new());
    let (mut current, mut bytes) = (Vec::new(), 16usize);
    for entry in entries {
        let size = entry.size();
        if entry.direct() {
            direct.push(entry);
            continue;
        }
        if bytes + size > MAX_MESSAGE_BYTES {
            messages.push(encode(&current));
            current.clear();
            bytes = 16;
        }
        bytes += size;
        current.push(entry);
    }
    if !current.is_empty() {
        messages.push(encode(&current));
    }
    (messages, direct)
}

pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, EnvelopeError> {
    let cbor = |source| EnvelopeError::Cbor { source };
    let mut d = minicbor::Decoder::new(bytes);
    let n = d.array().map_err(cbor)?.ok_or(EnvelopeError::Shape("indefinite array"))?;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = d.array().map_err(cbor)?;
        let entry = match (d.u8().map_err(cbor)?, len) {
            (0, Some(4)) => Entry::Valid {
                topic: d.str().map_err(cbor)?.to_owned(),
                inner: d.bytes().map_err(cbor)?.to_vec(),
                received_at: d.i64().map_err(cbor)?,
            },
            (1, Some(6)) => Entry::Rejected {
                gateway: d.str().map_err(cbor)?.to_owned(),
                reason: d.str().map_err(cbor)?.to_owned(),
                error: d.str().map_err(cbor)?.to_owned(),
                topic: d.str().map_err(cbor)?.to_owned(),
                at: d.i64().map_err(cbor)?,
            },
            _ => return Err(EnvelopeError::Shape("unknown entry kind")),
        };
        out.push(entry);
    }
    if d.position() != bytes.len() {
        return Err(EnvelopeError::Shape("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_roundtrip_and_pack_under_the_limit() {
        let valid = |n: usize| Entry::Valid { topic: "scs/v1/gw-1/up/telemetry".into(), inner: vec![7; n], received_at: 42 };
        let rej = Entry::Rejected {
            gateway: "gw-1".into(),
            reason: "malformed".into(),
            error: "bad".into(),
            topic: "t".into(),
            at: -1,
        };
        let entries = vec![valid(10), rej.clone(), valid(60 * 1024), valid(60 * 1024), valid(200 * 1024)];
        let (messages, oversize) = pack(entries.clone());
        assert_eq!(oversize, vec![valid(200 * 1024)]);
        assert_eq!(messages.len(), 2);
        assert!(messages.iter().all(|m| m.len() <= MAX_MESSAGE_BYTES));
        let back: Vec<Entry> = messages.iter().flat_map(|m| decode(m).unwrap()).collect();
        assert_eq!(back, entries[..4].to_vec());
        assert!(decode(b"\x81\x83\x00").is_err());
        assert!(decode(&[0x81, 0x82, 0x05, 0x00]).is_err());
    }

    #[test]
    fn command_updates_skip_the_queue() {
        let at = |topic: &str| Entry::Valid { topic: topic.into(), inner: vec![1; 40], received_at: 1 };
        let update = at("scs/v1/gw-1/up/command");
        let (messages, direct) = pack(vec![at("scs/v1/gw-1/up/telemetry"), update.clone(), at("scs/v1/gw-1/up/inventory")]);
        assert_eq!(direct, vec![update]);
        let back: Vec<Entry> = messages.iter().flat_map(|m| decode(m).unwrap()).collect();
        assert_eq!(back.len(), 2);
    }
}
