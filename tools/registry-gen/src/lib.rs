//! Reads `protocol/registry/commands.json` and renders every consumer's module from it:
//! the agent's and the shim's Rust tables (types from `scs_protocol::registry`), the JSON the shim serves
//! at `GET /v1/registry`, and the portal's TypeScript module.
//!
//! The JSON is parsed into owned structs, then leaked into `&'static` registry values so the very
//! `check_registry` the runtime trusts validates the source before anything is written.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use scs_protocol::registry::{check_registry, CommandSpec, Format, Lit, Operation, ParamSpec, ParamType, RateLimit, Safety};
use scs_protocol::CommandState;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use thiserror::Error;

pub const SOURCE: &str = "protocol/registry/commands.json";
pub const AGENT_OUT: &str = "agent/src/command_registry_gen.rs";
pub const SHIM_OUT: &str = "cloud-shim/src/command_registry_gen.rs";
pub const PORTAL_OUT: &str = "portal/src/command-registry.gen.ts";

#[derive(Debug, Error)]
pub enum GenError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{SOURCE} is not a valid registry: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("{SOURCE}: {0}")]
    Invalid(String),
    #[error("running rustfmt: {0}")]
    Rustfmt(String),
}

// ---- source model -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    #[serde(rename = "$comment")]
    _comment: Option<String>,
    version: u32,
    commands: Vec<SourceCommand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SourceCommand {
    #[serde(rename = "type")]
    command_type: String,
    title: String,
    #[serde(default)]
    description: String,
    path: String,
    operation: String,
    timeout_secs: u32,
    #[serde(default)]
    artifact: bool,
    safety: SourceSafety,
    #[serde(default)]
    params: Vec<SourceParam>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SourceSafety {
    destructive: bool,
    requires_confirmation: bool,
    max_concurrent_per_gateway: u32,
    rate_limit: Option<SourceRate>,
    targets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SourceRate {
    count: u32,
    per_secs: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SourceParam {
    /// Absent only for an array's `items`.
    name: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    required: bool,
    min: Option<f64>,
    max: Option<f64>,
    min_length: Option<u32>,
    max_length: Option<u32>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<Json>>,
    min_items: Option<u32>,
    max_items: Option<u32>,
    items: Option<Box<SourceParam>>,
    default: Option<Json>,
}

/// The parsed and checked registry.
pub struct Registry {
    pub version: u32,
    pub commands: &'static [CommandSpec],
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Vec::leak(v)
}

fn leak_str(s: &str) -> &'static str {
    String::leak(s.to_owned())
}

fn lit(ty: ParamType, v: &Json, what: &str) -> Result<Lit, GenError> {
    let bad = || GenError::Invalid(format!("{what}: {v} is not a valid {} literal", ty.as_str()));
    Ok(match ty {
        ParamType::Integer => Lit::Int(v.as_i64().ok_or_else(bad)?),
        ParamType::Number => Lit::Num(v.as_f64().ok_or_else(bad)?),
        ParamType::String => Lit::Str(leak_str(v.as_str().ok_or_else(bad)?)),
        ParamType::Boolean => Lit::Bool(v.as_bool().ok_or_else(bad)?),
        ParamType::Array => return Err(GenError::Invalid(format!("{what}: array defaults/enums are not supported"))),
    })
}

fn convert_param(cmd: &str, p: &SourceParam, is_item: bool) -> Result<ParamSpec, GenError> {
    let what = format!("{cmd}.{}", p.name.as_deref().unwrap_or("items"));
    let name = match (&p.name, is_item) {
        (Some(n), false) => leak_str(n),
        (None, true) => "",
        (None, false) => return Err(GenError::Invalid(format!("{what}: a parameter needs a name"))),
        (Some(_), true) => return Err(GenError::Invalid(format!("{what}: array items have no name"))),
    };
    let ty = ParamType::parse(&p.ty).ok_or_else(|| GenError::Invalid(format!("{what}: unknown type {:?}", p.ty)))?;
    let pattern = match &p.pattern {
        None => None,
        Some(s) => Some(Format::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            GenError::Invalid(format!("{what}: unknown pattern {s:?} (known: {})", known.join(", ")))
        })?),
    };
    let enum_values = match &p.enum_values {
        None => &[][..],
        Some(vs) => leak(vs.iter().map(|v| lit(ty, v, &what)).collect::<Result<Vec<_>, _>>()?),
    };
    let items = match &p.items {
        None => None,
        Some(i) => Some(&*Box::leak(Box::new(convert_param(cmd, i, true)?))),
    };
    let default = p.default.as_ref().map(|d| lit(ty, d, &what)).transpose()?;
    if is_item && (p.required || p.default.is_some()) {
        return Err(GenError::Invalid(format!("{what}: array items take no required/default")));
    }
    Ok(ParamSpec {
        name,
        ty,
        description: leak_str(&p.description),
        required: p.required,
        min: p.min,
        max: p.max,
        min_length: p.min_length,
        max_length: p.max_length,
        pattern,
        enum_values,
        min_items: p.min_items,
        max_items: p.max_items,
        items,
        default,
    })
}

fn convert(c: &SourceCommand) -> Result<CommandSpec, GenError> {
    let t = &c.command_type;
    let operation =
        Operation::parse(&c.operation).ok_or_else(|| GenError::Invalid(format!("{t}: unknown operation {:?}", c.operation)))?;
    let params = c.params.iter().map(|p| convert_param(t, p, false)).collect::<Result<Vec<_>, _>>()?;
    Ok(CommandSpec {
        command_type: leak_str(t),
        title: leak_str(&c.title),
        description: leak_str(&c.description),
        path: leak_str(&c.path),
        operation,
        timeout_secs: c.timeout_secs,
        artifact: c.artifact,
        safety: Safety {
            destructive: c.safety.destructive,
            requires_confirmation: c.safety.requires_confirmation,
            max_concurrent_per_gateway: c.safety.max_concurrent_per_gateway,
            rate_limit: c.safety.rate_limit.as_ref().map(|r| RateLimit { count: r.count, per_secs: r.per_secs }),
            targets: leak(c.safety.targets.iter().map(|s| leak_str(s)).collect()),
        },
        params: leak(params),
    })
}

/// Parses and checks registry JSON text.
pub fn parse(text: &str) -> Result<Registry, GenError> {
    let src: SourceFile = serde_json::from_str(text)?;
    if src.version != 1 {
        return Err(GenError::Invalid(format!("unsupported registry version {}", src.version)));
    }
    let commands = leak(src.commands.iter().map(convert).collect::<Result<Vec<_>, _>>()?);
    check_registry(commands).map_err(GenError::Invalid)?;
    Ok(Registry { version: src.version, commands })
}

pub fn load(root: &Path) -> Result<Registry, GenError> {
    let path = root.join(SOURCE);
    let text = std::fs::read_to_string(&path).map_err(|source| GenError::Read { path, source })?;
    parse(&text)
}

// ---- JSON (served by GET /v1/registry, embedded in the TS module) ------------------------------------

fn lit_json(l: &Lit) -> Json {
    match *l {
        Lit::Bool(b) => json!(b),
        Lit::Int(i) => json!(i),
        Lit::Num(f) => json!(f),
        Lit::Str(s) => json!(s),
    }
}

/// Whole numbers print without a fraction so `"min": 1` round-trips as it was written.
fn num_json(f: f64) -> Json {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn param_json(p: &ParamSpec) -> Json {
    let mut m = Map::new();
    if !p.name.is_empty() {
        m.insert("name".into(), json!(p.name));
    }
    m.insert("type".into(), json!(p.ty.as_str()));
    if !p.description.is_empty() {
        m.insert("description".into(), json!(p.description));
    }
    if !p.name.is_empty() {
        m.insert("required".into(), json!(p.required));
    }
    let opt_num = |m: &mut Map<String, Json>, k: &str, v: Option<f64>| {
        if let Some(v) = v {
            m.insert(k.into(), num_json(v));
        }
    };
    opt_num(&mut m, "min", p.min);
    opt_num(&mut m, "max", p.max);
    opt_num(&mut m, "minLength", p.min_length.map(f64::from));
    opt_num(&mut m, "maxLength", p.max_length.map(f64::from));
    if let Some(f) = p.pattern {
        m.insert("pattern".into(), json!(f.as_str()));
    }
    if !p.enum_values.is_empty() {
        m.insert("enum".into(), Json::Array(p.enum_values.iter().map(lit_json).collect()));
    }
    opt_num(&mut m, "minItems", p.min_items.map(f64::from));
    opt_num(&mut m, "maxItems", p.max_items.map(f64::from));
    if let Some(i) = p.items {
        m.insert("items".into(), param_json(i));
    }
    if let Some(d) = &p.default {
        m.insert("default".into(), lit_json(d));
    }
    Json::Object(m)
}

pub fn command_json(c: &CommandSpec) -> Json {
    let s = &c.safety;
    json!({
        "type": c.command_type,
        "title": c.title,
        "description": c.description,
        "path": c.path,
        "operation": c.operation.as_str(),
        "timeoutSecs": c.timeout_secs,
        "artifact": c.artifact,
        "safety": {
            "destructive": s.destructive,
            "requiresConfirmation": s.requires_confirmation,
            "maxConcurrentPerGateway": s.max_concurrent_per_gateway,
            "rateLimit": s.rate_limit.map(|r| json!({"count": r.count, "perSecs": r.per_secs})),
            "targets": s.targets,
        },
        "params": c.params.iter().map(param_json).collect::<Vec<_>>(),
    })
}

/// The registry as served by `GET /v1/registry`: a JSON array of commands.
pub fn registry_json(reg: &Registry) -> Json {
    Json::Array(reg.commands.iter().map(command_json).collect())
}

// ---- Rust -----------------------------------------------------------------------------------------

/// Which consumer a Rust table is for. The agent's copy leaves out titles and descriptions: they cost
/// binary size on the gateway and only humans read them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Agent,
    Shim,
}

fn rs_str(s: &str) -> String {
    format!("{s:?}")
}

fn rs_f64(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

fn rs_lit(l: &Lit) -> String {
    match *l {
        Lit::Bool(b) => format!("Lit::Bool({b})"),
        Lit::Int(i) => format!("Lit::Int({i})"),
        Lit::Num(f) => format!("Lit::Num({})", rs_f64(f)),
        Lit::Str(s) => format!("Lit::Str({})", rs_str(s)),
    }
}

fn rs_opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "None".to_owned(), |v| format!("Some({})", f(v)))
}

fn rs_format(f: Format) -> String {
    let variant = match f {
        Format::Hostname => "Hostname",
        Format::Host => "Host",
        Format::Ipv4 => "Ipv4",
        Format::Id => "Id",
        Format::Printable => "Printable",
    };
    format!("Format::{variant}")
}

fn rs_type(t: ParamType) -> &'static str {
    match t {
        ParamType::Integer => "ParamType::Integer",
        ParamType::Number => "ParamType::Number",
        ParamType::String => "ParamType::String",
        ParamType::Boolean => "ParamType::Boolean",
        ParamType::Array => "ParamType::Array",
    }
}

fn rs_operation(o: Operation) -> &'static str {
    match o {
        Operation::Read => "Operation::Read",
        Operation::Write => "Operation::Write",
        Operation::Execute => "Operation::Execute",
        Operation::Observe => "Operation::Observe",
    }
}

/// A struct literal laid out one field per line at `indent` levels, the way rustfmt would. rustfmt leaves
/// items holding over-long string literals (descriptions) untouched, so the generator lays them out itself.
fn rs_struct(name: &str, fields: &[(&str, String)], indent: usize) -> String {
    let pad = "    ".repeat(indent + 1);
    let mut s = format!("{name} {{\n");
    for (k, v) in fields {
        let _ = writeln!(s, "{pad}{k}: {v},");
    }
    s.push_str(&"    ".repeat(indent));
    s.push('}');
    s
}

fn rs_list(items: &[String], indent: usize) -> String {
    if items.is_empty() {
        return "&[]".into();
    }
    let pad = "    ".repeat(indent + 1);
    let mut s = "&[\n".to_owned();
    for i in items {
        let _ = writeln!(s, "{pad}{i},");
    }
    s.push_str(&"    ".repeat(indent));
    s.push(']');
    s
}

fn rs_param(p: &ParamSpec, who: Consumer, indent: usize) -> String {
    let desc = if who == Consumer::Agent { "" } else { p.description };
    let enums: Vec<String> = p.enum_values.iter().map(rs_lit).collect();
    let enums = if enums.is_empty() { "&[]".to_owned() } else { format!("&[{}]", enums.join(", ")) };
    rs_struct(
        "ParamSpec",
        &[
            ("name", rs_str(p.name)),
            ("ty", rs_type(p.ty).to_owned()),
            ("description", rs_str(desc)),
            ("required", p.required.to_string()),
            ("min", rs_opt(p.min, rs_f64)),
            ("max", rs_opt(p.max, rs_f64)),
            ("min_length", rs_opt(p.min_length, |v| v.to_string())),
            ("max_length", rs_opt(p.max_length, |v| v.to_string())),
            ("pattern", rs_opt(p.pattern, rs_format)),
            ("enum_values", enums),
            ("min_items", rs_opt(p.min_items, |v| v.to_string())),
            ("max_items", rs_opt(p.max_items, |v| v.to_string())),
            ("items", rs_opt(p.items, |i| format!("&{}", rs_param(i, who, indent + 1)))),
            ("default", rs_opt(p.default.as_ref(), rs_lit)),
        ],
        indent,
    )
}

fn rs_command(c: &CommandSpec, who: Consumer, indent: usize) -> String {
    let (title, desc) = if who == Consumer::Agent { ("", "") } else { (c.title, c.description) };
    let s = &c.safety;
    let targets: Vec<String> = s.targets.iter().map(|t| rs_str(t)).collect();
    let params: Vec<String> = c.params.iter().map(|p| rs_param(p, who, indent + 2)).collect();
    let safety = rs_struct(
        "Safety",
        &[
            ("destructive", s.destructive.to_string()),
            ("requires_confirmation", s.requires_confirmation.to_string()),
            ("max_concurrent_per_gateway", s.max_concurrent_per_gateway.to_string()),
            ("rate_limit", rs_opt(s.rate_limit, |r| format!("RateLimit {{ count: {}, per_secs: {} }}", r.count, r.per_secs))),
            ("targets", format!("&[{}]", targets.join(", "))),
        ],
        indent + 1,
    );
    rs_struct(
        "CommandSpec",
        &[
            ("command_type", rs_str(c.command_type)),
            ("title", rs_str(title)),
            ("description", rs_str(desc)),
            ("path", rs_str(c.path)),
            ("operation", rs_operation(c.operation).to_owned()),
            ("timeout_secs", c.timeout_secs.to_string()),
            ("artifact", c.artifact.to_string()),
            ("safety", safety),
            ("params", rs_list(&params, indent + 1)),
        ],
        indent,
    )
}

fn header(comment: &str) -> String {
    format!(
        "{comment} @generated by tools/registry-gen from {SOURCE}. DO NOT EDIT.\n\
         {comment} Edit the registry JSON, then run `cargo run -p registry-gen`.\n"
    )
}

/// Unformatted Rust source for one consumer; [`rustfmt`] formats it.
pub fn render_rust(reg: &Registry, who: Consumer) -> String {
    let mut out = header("//");
    // Not every consumer uses every item, and a registry without (say) patterns leaves an import unused.
    out.push_str("#![allow(dead_code, unused_imports)]\n\n");
    out.push_str(
        "use scs_protocol::registry::{CommandSpec, Format, Lit, Operation, ParamSpec, ParamType, RateLimit, Safety};\n\n",
    );
    let _ = writeln!(out, "/// Version of the registry source file.\npub const REGISTRY_VERSION: u32 = {};\n", reg.version);
    out.push_str("/// Every command this build knows, in registry order.\npub static COMMANDS: &[CommandSpec] = &[\n");
    for c in reg.commands {
        let _ = writeln!(out, "    {},", rs_command(c, who, 1));
    }
    out.push_str("];\n\n");
    out.push_str(
        "/// The registry entry of a command type.\npub fn find(command_type: &str) -> Option<&'static CommandSpec> {\n    \
         scs_protocol::registry::find(COMMANDS, command_type)\n}\n",
    );
    if who == Consumer::Shim {
        let text = serde_json::to_string(&registry_json(reg)).expect("serialising a JSON value cannot fail");
        let hashes = "#".repeat(longest_hash_run(&text));
        let _ = write!(
            out,
            "\n/// The registry as served by `GET /v1/registry` (a JSON array of commands).\n\
             pub const REGISTRY_JSON: &str = r{hashes}\"{text}\"{hashes};\n"
        );
    }
    out
}

fn longest_hash_run(s: &str) -> usize {
    s.split(|c| c != '#').map(str::len).max().unwrap_or(0) + 1
}

/// Formats Rust source with the toolchain's rustfmt (`$RUSTFMT` overrides), run in `root` so a
/// `rustfmt.toml` there applies and `cargo fmt` leaves generated files unchanged.
pub fn rustfmt(root: &Path, src: &str) -> Result<String, GenError> {
    let exe = std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".to_owned());
    let mut child = Command::new(&exe)
        .args(["--edition", "2021", "--emit", "stdout"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GenError::Rustfmt(format!("{exe}: {e}")))?;
    {
        let mut stdin = child.stdin.take().ok_or_else(|| GenError::Rustfmt("no stdin".into()))?;
        stdin.write_all(src.as_bytes()).map_err(|e| GenError::Rustfmt(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| GenError::Rustfmt(e.to_string()))?;
    if !out.status.success() {
        return Err(GenError::Rustfmt(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    String::from_utf8(out.stdout).map_err(|e| GenError::Rustfmt(e.to_string()))
}

// ---- TypeScript ------------------------------------------------------------------------------------

fn ts_union<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" | ")
}

fn ts_value_type(p: &ParamSpec) -> String {
    if !p.enum_values.is_empty() {
        return p.enum_values.iter().map(|l| lit_json(l).to_string()).collect::<Vec<_>>().join(" | ");
    }
    match p.ty {
        ParamType::Integer | ParamType::Number => "number".into(),
        ParamType::String => "string".into(),
        ParamType::Boolean => "boolean".into(),
        ParamType::Array => match p.items {
            Some(i) => format!("Array<{}>", ts_value_type(i)),
            None => "unknown[]".into(),
        },
    }
}

pub fn render_ts(reg: &Registry) -> String {
    let mut out = header("//");
    out.push('\n');
    let _ = writeln!(out, "export const REGISTRY_VERSION = {} as const;\n", reg.version);
    let _ = writeln!(out, "export type Operation = {};", ts_union(Operation::ALL.iter().map(|o| o.as_str())));
    let _ = writeln!(out, "export type ParamType = {};", ts_union(ParamType::ALL.iter().map(|t| t.as_str())));
    let _ = writeln!(out, "/** Named string formats (not regular expressions); see protocol/src/registry.rs. */");
    let _ = writeln!(out, "export type PatternName = {};", ts_union(Format::ALL.iter().map(|f| f.as_str())));
    let _ = writeln!(out, "export type CommandState = {};", ts_union(CommandState::ALL.iter().map(|s| s.as_str())));
    let _ = writeln!(out, "export type CommandType = {};\n", ts_union(reg.commands.iter().map(|c| c.command_type)));
    out.push_str(
        "export type Literal = string | number | boolean;\n\n\
         export interface ItemSpec {\n  type: ParamType;\n  description?: string;\n  min?: number;\n  max?: number;\n  \
         minLength?: number;\n  maxLength?: number;\n  pattern?: PatternName;\n  enum?: readonly Literal[];\n  \
         minItems?: number;\n  maxItems?: number;\n  items?: ItemSpec;\n  default?: Literal;\n}\n\n\
         export interface ParamSpec extends ItemSpec {\n  name: string;\n  required: boolean;\n}\n\n\
         export interface RateLimit {\n  count: number;\n  perSecs: number;\n}\n\n\
         export interface Safety {\n  destructive: boolean;\n  requiresConfirmation: boolean;\n  \
         maxConcurrentPerGateway: number;\n  rateLimit: RateLimit | null;\n  /** Device classes: \"gateway\", later \"camera\", \"nvr\". */\n  \
         targets: readonly string[];\n}\n\n\
         export interface CommandSpec {\n  type: CommandType;\n  title: string;\n  description: string;\n  path: string;\n  \
         operation: Operation;\n  timeoutSecs: number;\n  /** The command uploads an artifact (log bundle, snapshot, clip). */\n  \
         artifact: boolean;\n  safety: Safety;\n  params: readonly ParamSpec[];\n}\n\n",
    );
    out.push_str("/** Parameters each command type accepts (optional ones may be omitted; the registry applies defaults). */\n");
    out.push_str("export interface CommandParams {\n");
    for c in reg.commands {
        if c.params.is_empty() {
            let _ = writeln!(out, "  {:?}: Record<string, never>;", c.command_type);
            continue;
        }
        let _ = writeln!(out, "  {:?}: {{", c.command_type);
        for p in c.params {
            let _ = writeln!(out, "    {}{}: {};", p.name, if p.required { "" } else { "?" }, ts_value_type(p));
        }
        out.push_str("  };\n");
    }
    out.push_str("}\n\n");
    let data = serde_json::to_string_pretty(&registry_json(reg)).expect("serialising a JSON value cannot fail");
    let _ = writeln!(out, "export const COMMANDS: readonly CommandSpec[] = {data};\n");
    out.push_str(
        "export function findCommand(type: string): CommandSpec | undefined {\n  \
         return COMMANDS.find((c) => c.type === type);\n}\n",
    );
    out
}

// ---- driver -----------------------------------------------------------------------------------------

/// One generated file: where it goes and what it must contain.
pub struct Output {
    pub rel_path: &'static str,
    pub content: String,
}

/// Renders every generated file from the registry under `root`.
pub fn render_all(root: &Path) -> Result<Vec<Output>, GenError> {
    let reg = load(root)?;
    Ok(vec![
        Output { rel_path: AGENT_OUT, content: rustfmt(root, &render_rust(&reg, Consumer::Agent))? },
        Output { rel_path: SHIM_OUT, content: rustfmt(root, &render_rust(&reg, Consumer::Shim))? },
        Output { rel_path: PORTAL_OUT, content: render_ts(&reg) },
    ])
}

/// Generated files under `root` whose content differs from what the registry renders to (or that are missing).
pub fn stale_files(root: &Path) -> Result<Vec<PathBuf>, GenError> {
    let mut stale = Vec::new();
    for o in render_all(root)? {
        let path = root.join(o.rel_path);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(o.content.as_str()) {
            stale.push(path);
        }
    }
    Ok(stale)
}

/// Writes every generated file that changed; returns the paths written.
pub fn write_all(root: &Path) -> Result<Vec<PathBuf>, GenError> {
    let mut written = Vec::new();
    for o in render_all(root)? {
        let path = root.join(o.rel_path);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(o.content.as_str()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| GenError::Write { path: dir.to_owned(), source })?;
        }
        std::fs::write(&path, &o.content).map_err(|source| GenError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

/// The workspace root this tool was built in.
pub fn default_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}
