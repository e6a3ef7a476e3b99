//! `agent.log_tail` (/32769/0/4, read): the last lines of the agent's own log (`logs/agent.log`,
//! continuing into the rotated `agent.log.1` when the current file is short), optionally filtered by
//! minimum level and a substring. The result stays well under the uplink message limit.

use std::collections::VecDeque;
use std::path::Path;

use scs_protocol::Value;

use super::{CommandError, Job, Output};

pub const TYPE: &str = "agent.log_tail";
/// Longest line returned; longer ones are cut (with a marker).
const MAX_LINE: usize = 1024;
/// Total text returned, far under the 256 KiB uplink limit.
const MAX_TOTAL: usize = 160 * 1024;
const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// Severity of a log line (0 = ERROR .. 4 = TRACE), read from the first level word near its start.
fn level_of(line: &str) -> Option<usize> {
    let head: String = line.chars().take(64).collect();
    head.split(|c: char| !c.is_ascii_alphabetic()).find_map(|w| LEVELS.iter().position(|l| *l == w))
}

fn cut(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_owned();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// The last `n` matching lines of `files` (oldest file first), and whether anything was left out
/// because of the byte budget.
pub fn tail(files: &[&Path], n: usize, min_level: Option<usize>, contains: Option<&str>) -> (Vec<String>, bool) {
    let mut keep: VecDeque<String> = VecDeque::with_capacity(n.min(1024));
    for f in files {
        let Ok(bytes) = std::fs::read(f) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            if let Some(min) = min_level {
                // Continuation lines (no level) belong to the entry before; keep them only if unfiltered.
                if level_of(line).is_none_or(|l| l > min) {
                    continue;
                }
            }
            if contains.is_some_and(|c| !line.contains(c)) {
                continue;
            }
            if keep.len() == n {
                keep.pop_front();
            }
            keep.push_back(cut(line));
        }
    }
    let mut total: usize = keep.iter().map(|l| l.len() + 1).sum();
    let mut truncated = false;
    while total > MAX_TOTAL {
        let Some(l) = keep.pop_front() else { break };
        total -= l.len() + 1;
        truncated = true;
    }
    (keep.into(), truncated)
}

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let dir = job.ctx.log_dir();
    let current = dir.join(crate::logging::LOG_FILE);
    let rotated = dir.join(crate::logging::LOG_FILE_OLD);
    if !current.exists() && !rotated.exists() {
        return Err(CommandError::Failed(format!("no agent log in {} (file logging disabled?)", dir.display())));
    }
    let n = job.int("lines").unwrap_or(100).clamp(1, 10_000) as usize;
    let min_level = job.str("minLevel").and_then(|l| LEVELS.iter().position(|x| x.eq_ignore_ascii_case(l)));
    let (lines, truncated) = tail(&[rotated.as_path(), current.as_path()], n, min_level, job.str("contains"));
    Ok(Output::value(Value::map([
        ("file", Value::from(current.display().to_string())),
        ("count", Value::from(lines.len() as u64)),
        ("truncated", Value::Bool(truncated)),
        ("lines", Value::Array(lines.into_iter().map(Value::Text).collect())),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_across_rotation_with_filters() {
        let dir = std::env::temp_dir().join(format!("scs-logtail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, cur) = (dir.join("agent.log.1"), dir.join("agent.log"));
        std::fs::write(&old, "[2026-01-01T00:00:00Z INFO  scs] one\n[2026-01-01T00:00:01Z ERROR scs] two\n").unwrap();
        std::fs::write(&cur, "[2026-01-01T00:00:02Z WARN  scs] three\n[2026-01-01T00:00:03Z DEBUG scs] four\n").unwrap();
        let files = [old.as_path(), cur.as_path()];
        let (l, t) = tail(&files, 3, None, None);
        assert_eq!(l.len(), 3);
        assert!(l[0].ends_with("two") && l[2].ends_with("four") && !t);
        let (l, _) = tail(&files, 10, Some(1), None);
        assert_eq!(l.iter().map(|s| &s[s.len() - 3..]).collect::<Vec<_>>(), ["two", "ree"]);
        let (l, _) = tail(&files, 10, None, Some("one"));
        assert_eq!(l.len(), 1);
        let long = "x".repeat(5000);
        std::fs::write(&cur, format!("{long}\n").repeat(200)).unwrap();
        let (l, t) = tail(&[cur.as_path()], 1000, None, None);
        assert!(t && l.iter().all(|s| s.len() <= MAX_LINE + 3));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
