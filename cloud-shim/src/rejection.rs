//! Classifying refused uplink messages: the protocol crate's rules, shared with the Worker.

pub use scs_protocol::rejection::{Rejection, UNKNOWN_GATEWAY};
