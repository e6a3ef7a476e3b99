//! `image.install` (destructive, needs confirmation): downloads a RAUC or SWUpdate bundle into the
//! spool like `agent.update` does, checks its size and SHA-256, and hands it to the configured tool
//! (`rauc install BUNDLE` / `swupdate -i BUNDLE`, explicit argv). The tool verifies the bundle's own
//! signature with the keyring in the image. Its progress lines (`NN% ...`) and last output go into the
//! result.
//!
//! After a successful handoff the command is recorded as restarting (the agent restarts, and reboots
//! the gateway when `reboot` is true) and stays `running` until the gateway has rebooted: the first
//! agent start under a new boot id asks the tool which slot booted and whether it is marked good
//! (`rauc status --output-format=json`, or SWUpdate's `ustate` from the bootloader environment) and
//! reports the final state.

use std::path::PathBuf;

use scs_protocol::{CommandState, Value};

use super::agent_update::{fetch, Recovered};
use super::{child, CommandError, Job, Output};
use crate::context::AgentContext;
use crate::update::download::verify_file;
use crate::update::{ImageTool, Layout, UpdateConfig};

pub const TYPE: &str = "image.install";
const PENDING: &str = "image-pending";
/// Progress lines kept in the result.
const MAX_PROGRESS_LINES: usize = 20;

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let ctx = &job.ctx;
    let cfg = &ctx.config.update;
    let url = job.require_str("url")?;
    let size = u64::try_from(job.require_int("size")?).map_err(|_| CommandError::Failed("size must be positive".into()))?;
    let sha256 = job.require_str("sha256")?;
    let reboot = job.params.get("reboot").and_then(Value::as_bool).unwrap_or(true);
    let tool = tool_argv(cfg)
        .ok_or_else(|| CommandError::Failed("this image has no update tool ([update] image_tool = \"none\")".into()))?;
    let booted_before = if cfg.image_tool == ImageTool::Rauc { rauc_slot(job, cfg).ok().flatten() } else { None };
    let bundle = fetch(job, url, size, sha256)?;
    if let Err(e) = verify_file(&bundle, size, sha256) {
        let _ = std::fs::remove_file(&bundle);
        return Err(CommandError::Failed(e.to_string()));
    }
    let mut argv = tool.clone();
    argv.push(bundle.display().to_string());
    log::warn!("command {}: installing image bundle with {argv:?}", job.id);
    let out = child::run(job, &argv);
    let _ = std::fs::remove_file(&bundle);
    let out = out?;
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let progress: Vec<Value> = progress_lines(&text).into_iter().map(Value::from).collect();
    if !out.status.success() {
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
        return Err(CommandError::Failed(format!("{} failed ({}): {last}", tool.first().map_or("", String::as_str), out.status)));
    }
    let record = format!(
        "command={}\ntool={}\nboot_id={}\nbooted_before={}\n",
        job.id,
        tool_name(cfg.image_tool),
        boot_id(cfg),
        booted_before.unwrap_or_default()
    );
    let layout = Layout::new(&ctx.data_dir);
    write_record(&layout, &record).map_err(|e| CommandError::io("recording the pending image install", e))?;
    log::warn!("command {}: bundle installed; progress {progress:?}", job.id);
    if reboot {
        let argv = &ctx.config.commands.reboot_command;
        let out = child::run(job, argv)?;
        if !out.status.success() {
            return Err(CommandError::Failed(format!(
                "bundle installed, but the reboot command {argv:?} failed ({}): {}",
                out.status,
                out.stderr.trim()
            )));
        }
    }
    Err(CommandError::RestartRequested)
}

fn tool_name(t: ImageTool) -> &'static str {
    match t {
        ImageTool::Rauc => "rauc",
        ImageTool::Swupdate => "swupdate",
        ImageTool::None => "none",
    }
}

fn tool_argv(cfg: &UpdateConfig) -> Option<Vec<String>> {
    match cfg.image_tool {
        ImageTool::Rauc => Some(vec![cfg.rauc_command.clone(), "install".into()]),
        ImageTool::Swupdate => Some(vec![cfg.swupdate_command.clone(), "-i".into()]),
        ImageTool::None => None,
    }
}

/// `NN% text` lines (RAUC's and SWUpdate's progress format), the last few.
pub fn progress_lines(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.split_once('%').is_some_and(|(n, _)| !n.is_empty() && n.trim().chars().all(|c| c.is_ascii_digit())))
        .map(str::to_owned)
        .collect();
    let skip = lines.len().saturating_sub(MAX_PROGRESS_LINES);
    lines.into_iter().skip(skip).collect()
}

fn boot_id(cfg: &UpdateConfig) -> String {
    std::fs::read_to_string(&cfg.boot_id_file).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn record_path(layout: &Layout) -> PathBuf {
    layout.dir().join(PENDING)
}

fn write_record(layout: &Layout, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(layout.dir())?;
    let tmp = layout.dir().join(".image-pending.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, record_path(layout))
}

/// The slot RAUC reports as booted, from `rauc status --output-format=json`.
fn rauc_slot(job: &Job, cfg: &UpdateConfig) -> Result<Option<String>, CommandError> {
    let argv = [cfg.rauc_command.clone(), "status".into(), "--output-format=json".into()];
    let out = child::run(job, &argv)?;
    Ok(RaucStatus::parse(&out.stdout).and_then(|s| s.booted_slot))
}

/// What the agent needs from RAUC's JSON status: the booted slot and its boot status.
#[derive(Debug, PartialEq, Eq)]
pub struct RaucStatus {
    pub booted: Option<String>,
    pub boot_primary: Option<String>,
    pub booted_slot: Option<String>,
    pub boot_status: Option<String>,
}

impl RaucStatus {
    pub fn parse(json: &str) -> Option<RaucStatus> {
        let v = json_value(json).filter(toml::Value::is_table)?;
        let s = |v: &toml::Value, k: &str| v.get(k).and_then(toml::Value::as_str).map(str::to_owned);
        let mut st =
            RaucStatus { booted: s(&v, "booted"), boot_primary: s(&v, "boot_primary"), booted_slot: None, boot_status: None };
        // "slots": [ { "rootfs.0": { "state": "booted", "boot_status": "good", ... } }, ... ]
        for entry in v.get("slots").and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            for (name, slot) in entry.as_table().into_iter().flatten() {
                if s(slot, "state").as_deref() == Some("booted") {
                    st.booted_slot = Some(name.clone());
                    st.boot_status = s(slot, "boot_status");
                }
            }
        }
        Some(st)
    }
}

/// JSON is read through the TOML crate's data model via serde (the agent carries no JSON parser);
/// `null` values, which TOML lacks, are dropped first.
fn json_value(json: &str) -> Option<toml::Value> {
    let cleaned = json.replace(":null", ":\"\"").replace(": null", ": \"\"");
    let mut de = JsonLite::new(&cleaned);
    de.value()
}

/// A small recursive reader for the JSON subset RAUC prints (objects, arrays, strings, numbers,
/// booleans), producing `toml::Value`s.
struct JsonLite<'a> {
    rest: &'a str,
}

impl<'a> JsonLite<'a> {
    fn new(s: &'a str) -> Self {
        JsonLite { rest: s }
    }
    fn ws(&mut self) {
        self.rest = self.rest.trim_start();
    }
    fn eat(&mut self, c: char) -> bool {
        self.ws();
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }
    fn string(&mut self) -> Option<String> {
        if !self.eat('"') {
            return None;
        }
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = self.rest.get(i + 1..)?;
                    return Some(out);
                }
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        None
    }
    fn value(&mut self) -> Option<toml::Value> {
        self.ws();
        let c = self.rest.chars().next()?;
        match c {
            '{' => {
                self.eat('{');
                let mut t = toml::Table::new();
                if self.eat('}') {
                    return Some(toml::Value::Table(t));
                }
                loop {
                    let k = self.string()?;
                    if !self.eat(':') {
                        return None;
                    }
                    let v = self.value()?;
                    t.insert(k, v);
                    if self.eat(',') {
                        continue;
                    }
                    return self.eat('}').then_some(toml::Value::Table(t));
                }
            }
            '[' => {
                self.eat('[');
                let mut a = Vec::new();
                if self.eat(']') {
                    return Some(toml::Value::Array(a));
                }
                loop {
                    a.push(self.value()?);
                    if self.eat(',') {
                        continue;
                    }
                    return self.eat(']').then_some(toml::Value::Array(a));
                }
            }
            '"' => self.string().map(toml::Value::String),
            _ => {
                let end = self.rest.find(|c: char| matches!(c, ',' | '}' | ']') || c.is_whitespace()).unwrap_or(self.rest.len());
                let (tok, rest) = self.rest.split_at_checked(end)?;
                self.rest = rest;
                Some(match tok {
                    "true" => toml::Value::Boolean(true),
                    "false" => toml::Value::Boolean(false),
                    t => t.parse::<i64>().map(toml::Value::Integer).unwrap_or_else(|_| toml::Value::String(t.to_owned())),
                })
            }
        }
    }
}

fn read_record(layout: &Layout) -> Option<String> {
    std::fs::read_to_string(record_path(layout)).ok()
}

fn field<'a>(text: &'a str, k: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).unwrap_or("")
}

/// Outcome of an `image.install` left restarting: wait while the gateway has not rebooted (or the new
/// slot is not decided yet); afterwards the booted slot and its boot status.
pub fn recovered(ctx: &AgentContext, id: &str) -> Option<Recovered> {
    let cfg = &ctx.config.update;
    let layout = Layout::new(&ctx.data_dir);
    let rec = read_record(&layout).filter(|r| field(r, "command") == id)?;
    if field(&rec, "boot_id") == boot_id(cfg) {
        return Some(Recovered::Wait);
    }
    let tool = field(&rec, "tool");
    let (state, result, error) = if tool == "rauc" {
        let out = std::process::Command::new(&cfg.rauc_command).args(["status", "--output-format=json"]).output();
        let st = out.ok().and_then(|o| RaucStatus::parse(&String::from_utf8_lossy(&o.stdout)));
        let Some(st) = st else {
            return Some(outcome(CommandState::Failed, vec![], "rauc status gave no readable answer after the reboot".into()));
        };
        let before = field(&rec, "booted_before");
        let slot = st.booted_slot.clone().unwrap_or_default();
        let good = st.boot_status.as_deref() == Some("good");
        let fields = vec![
            ("tool", Value::from("rauc")),
            ("bootedSlot", Value::from(slot.as_str())),
            ("booted", Value::from(st.booted.clone().unwrap_or_default().as_str())),
            ("bootStatus", Value::from(st.boot_status.clone().unwrap_or_default().as_str())),
            ("markedGood", Value::Bool(good)),
            ("previousSlot", Value::from(before)),
        ];
        if !before.is_empty() && slot == before {
            (
                CommandState::Failed,
                fields,
                Some(format!("the gateway booted the previous slot {slot} again (bootloader fallback)")),
            )
        } else if good {
            (CommandState::Succeeded, fields, None)
        } else {
            return Some(Recovered::Wait);
        }
    } else {
        let out = std::process::Command::new(cfg.swupdate_state_command.first()?)
            .args(cfg.swupdate_state_command.get(1..).unwrap_or_default())
            .output();
        let ustate = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
        let fields = vec![
            ("tool", Value::from("swupdate")),
            ("ustate", Value::from(ustate.as_str())),
            ("markedGood", Value::Bool(ustate == "0")),
        ];
        match ustate.as_str() {
            "0" => (CommandState::Succeeded, fields, None),
            "3" => (CommandState::Failed, fields, Some("SWUpdate reports the update failed (ustate 3)".into())),
            _ => return Some(Recovered::Wait),
        }
    };
    let _ = std::fs::remove_file(record_path(&layout));
    Some(match error {
        Some(e) => outcome(state, result, e),
        None => Recovered::Outcome { state, result: Value::map(result), error: None },
    })
}

fn outcome(state: CommandState, fields: Vec<(&str, Value)>, error: String) -> Recovered {
    Recovered::Outcome { state, result: Value::map(fields), error: Some(error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rauc_status_and_progress() {
        let json = r#"{"compatible":"scs-gw","variant":null,"booted":"B","boot_primary":"rootfs.1",
          "slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/mmcblk0p2","state":"inactive","boot_status":"good"}},
                   {"rootfs.1":{"class":"rootfs","device":"/dev/mmcblk0p3","state":"booted","boot_status":"good","n":3}}]}"#;
        let st = RaucStatus::parse(json).unwrap();
        assert_eq!(st.booted.as_deref(), Some("B"));
        assert_eq!(st.booted_slot.as_deref(), Some("rootfs.1"));
        assert_eq!(st.boot_status.as_deref(), Some("good"));
        assert!(RaucStatus::parse("not json").is_none());
        let p = progress_lines("installing\n  0% Installing\n 40% Checking bundle\n100% Installing done.\nidle\n");
        assert_eq!(p, vec!["0% Installing", "40% Checking bundle", "100% Installing done."]);
    }
}
