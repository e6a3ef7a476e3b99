//! The HTTP ingest body (`POST /v1/ingest`): a CBOR array of raw MQTT messages, each `[topic (tstr),
//! payload (bstr)]`, payloads still in their COSE_Sign1 envelopes. Forwarding shims encode it; the shim
//! and the Worker decode it with the same function.

use thiserror::Error;

/// Largest request body a server accepts (413 above).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Most messages in one request.
pub const MAX_BATCH_MESSAGES: usize = 10_000;

#[derive(Debug, Error)]
pub enum BatchError {
    #[error("ingest body is not a CBOR array of [topic, payload] pairs: {source}")]
    Cbor {
        #[source]
        source: minicbor::decode::Error,
    },
    #[error("ingest body is not a CBOR array of [topic, payload] pairs: {0}")]
    Shape(&'static str),
    #[error("ingest body holds {0} messages, more than the limit of {1}")]
    TooMany(u64, usize),
}

/// Encodes the body; writing into a Vec cannot fail.
pub fn encode_batch<'a>(messages: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let _ = e.array(messages.len() as u64);
    for (topic, payload) in messages {
        let _ = e.array(2).and_then(|e| e.str(topic)).and_then(|e| e.bytes(payload));
    }
    e.into_writer()
}

/// Decodes the body; the count is checked before anything is allocated for it.
pub fn decode_batch(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, BatchError> {
    let cbor = |source| BatchError::Cbor { source };
    let mut d = minicbor::Decoder::new(body);
    let n = d.array().map_err(cbor)?.ok_or(BatchError::Shape("indefinite-length array"))?;
    if n > MAX_BATCH_MESSAGES as u64 {
        return Err(BatchError::TooMany(n, MAX_BATCH_MESSAGES));
    }
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for _ in 0..n {
        if d.array().map_err(cbor)? != Some(2) {
            return Err(BatchError::Shape("each message must be a 2-element array"));
        }
        let topic = d.str().map_err(cbor)?.to_owned();
        let payload = d.bytes().map_err(cbor)?.to_vec();
        out.push((topic, payload));
    }
    if d.position() != body.len() {
        return Err(BatchError::Shape("trailing bytes after the array"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_roundtrip_and_bad_shapes() {
        let msgs = [("scs/v1/gw/up/telemetry", &b"\x01\x02"[..]), ("t2", &b""[..])];
        let body = encode_batch(msgs.iter().copied());
        let back = decode_batch(&body).unwrap();
        assert_eq!(back, vec![("scs/v1/gw/up/telemetry".to_owned(), vec![1, 2]), ("t2".to_owned(), vec![])]);
        assert!(decode_batch(b"garbage").is_err());
        assert!(decode_batch(&body[..body.len() - 1]).is_err());
        assert!(decode_batch(&[0x9a, 0xff, 0xff, 0xff, 0xff]).is_err(), "huge count refused before allocating");
        assert!(matches!(decode_batch(&[0x9f, 0xff]), Err(BatchError::Shape(_))));
    }
}
