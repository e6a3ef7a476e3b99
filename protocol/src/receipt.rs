//! Ingest receipt: the cloud has durably committed (or permanently refused) these uplink seqs.
//! The agent deletes a queued message only when a receipt names its seq; an MQTT PUBACK only
//! means the broker has it.

use minicbor::{Decode, Encode};

use crate::error::ProtocolError;
use crate::limits::MAX_RECEIPT_SEQS;

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Receipt {
    #[n(0)]
    pub v: u8,
    /// Stored (or already stored earlier: duplicates are receipted again).
    #[n(1)]
    pub accepted: Vec<u64>,
    /// Decoded far enough to read the seq but refused for good (wrong gateway, invalid content).
    /// The agent drops them and counts them, rather than resending a poison message forever.
    #[n(2)]
    pub rejected: Option<Vec<u64>>,
    #[n(3)]
    pub reason: Option<String>,
}

impl Receipt {
    pub fn accepted(seqs: Vec<u64>) -> Receipt {
        Receipt { v: crate::version::PROTOCOL_VERSION, accepted: seqs, rejected: None, reason: None }
    }

    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        let n = self.accepted.len() + self.rejected.as_ref().map_or(0, Vec::len);
        if n > MAX_RECEIPT_SEQS {
            return Err(ProtocolError::TooMany { what: "receipt seqs", count: n, limit: MAX_RECEIPT_SEQS });
        }
        Ok(())
    }
}
