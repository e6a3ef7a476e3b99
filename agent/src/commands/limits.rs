//! Safety limits from the registry: commands of one type running at once (in memory: after a restart
//! nothing runs) and commands of one type accepted per time window (durable, from the journal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use scs_protocol::registry::CommandSpec;

use super::journal::{Journal, JournalError};

/// Why a command may not start now.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{running} commands already running on this gateway (limit {limit})")]
    GatewayBusy { running: u32, limit: u32 },
    #[error("{running} {command_type} already running (maxConcurrentPerGateway {limit})")]
    TypeBusy { command_type: &'static str, running: u32, limit: u32 },
    #[error("rate limit: {count} {command_type} in the last {per_secs} s (limit {limit} per {per_secs} s)")]
    Rate { command_type: &'static str, count: u32, limit: u32, per_secs: u32 },
    #[error("cannot check the rate limit: {0}")]
    Journal(#[from] JournalError),
}

/// Commands of all types running at once, whatever the registry allows per type: a gateway has
/// little CPU and memory to spare.
pub const MAX_RUNNING_TOTAL: u32 = 8;

/// Counts running commands per type. A [`Slot`] holds one place until dropped.
#[derive(Clone, Default)]
pub struct Concurrency {
    running: Arc<Mutex<HashMap<&'static str, u32>>>,
}

/// One running command's place; released on drop, whatever way the command ends.
pub struct Slot {
    owner: Concurrency,
    command_type: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.owner.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(self.command_type) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Concurrency {
    /// Takes a place for a command of `spec`'s type, or says why not.
    pub fn try_acquire(&self, spec: &'static CommandSpec) -> Result<Slot, LimitError> {
        let mut m = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let total: u32 = m.values().sum();
        if total >= MAX_RUNNING_TOTAL {
            return Err(LimitError::GatewayBusy { running: total, limit: MAX_RUNNING_TOTAL });
        }
        let n = m.entry(spec.command_type).or_insert(0);
        let limit = spec.safety.max_concurrent_per_gateway;
        if *n >= limit {
            return Err(LimitError::TypeBusy { command_type: spec.command_type, running: *n, limit });
        }
        *n += 1;
        Ok(Slot { owner: self.clone(), command_type: spec.command_type })
    }

    #[cfg(test)]
    pub fn running(&self, command_type: &str) -> u32 {
        let m = self.running.lock().unwrap_or_else(|e| e.into_inner());
        m.get(command_type).copied().unwrap_or(0)
    }
}

/// `Ok(())` if another command of this type may start now under its rate limit.
pub fn check_rate(journal: &Journal, spec: &'static CommandSpec, now_ms: u64) -> Result<(), LimitError> {
    let Some(limit) = spec.safety.rate_limit else { return Ok(()) };
    let since = now_ms.saturating_sub(u64::from(limit.per_secs) * 1000);
    let n = journal.ran_since(spec.command_type, since)?;
    if n >= limit.count {
        return Err(LimitError::Rate { command_type: spec.command_type, count: n, limit: limit.count, per_secs: limit.per_secs });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::registry::{CommandSpec, Operation, Safety};

    static ONE: CommandSpec = CommandSpec {
        command_type: "t.one",
        title: "",
        description: "",
        path: "/1",
        operation: Operation::Execute,
        timeout_secs: 1,
        artifact: false,
        safety: Safety::HARMLESS_GATEWAY,
        params: &[],
    };

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let c = Concurrency::default();
        let s = c.try_acquire(&ONE).unwrap();
        let refused = c.try_acquire(&ONE).err().expect("second slot refused");
        assert!(matches!(refused, LimitError::TypeBusy { running: 1, limit: 1, .. }), "{refused}");
        assert!(refused.to_string().contains("maxConcurrentPerGateway 1"), "{refused}");
        drop(s);
        assert_eq!(c.running("t.one"), 0);
        assert!(c.try_acquire(&ONE).is_ok());
    }
}
