//! Command sessions (engineer C). Stub until C lands: only the ingest hook exists.

pub mod store;
