//! Command registry types and parameter validation.
//!
//! The registry's source of truth is `protocol/registry/commands.json`; `tools/registry-gen` turns it into
//! static tables of these types (`agent/src/command_registry_gen.rs`, `cloud-shim/src/command_registry_gen.rs`)
//! and a TypeScript module for the portal. Both the shim (before queueing) and the agent (before running)
//! call [`check_command`], so a command injected straight into MQTT is held to the same rules.
//!
//! String patterns are a closed set of named formats ([`Format`]) rather than regular expressions: the
//! agent's binary budget has no room for a regex engine, and every pattern a gateway command needs so far
//! (host names, IP literals, identifiers, printable text) is better checked by a purpose-built function
//! than by a regex that approximates it. A new format is one enum variant plus one function.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::ids::validate_id;
use crate::value::Value;

/// LwM2M-style operation on the command's object path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
    Execute,
    Observe,
}

impl Operation {
    pub const ALL: [Operation; 4] = [Operation::Read, Operation::Write, Operation::Execute, Operation::Observe];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Execute => "execute",
            Operation::Observe => "observe",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Type of a parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// A whole number; `3.0` is accepted and normalised to `3`.
    Integer,
    /// Any finite number.
    Number,
    String,
    Boolean,
    Array,
}

impl ParamType {
    pub const ALL: [ParamType; 5] =
        [ParamType::Integer, ParamType::Number, ParamType::String, ParamType::Boolean, ParamType::Array];

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::String => "string",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
        }
    }

    pub fn parse(s: &str) -> Option<ParamType> {
        ParamType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Named string formats, the registry's `pattern` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// RFC 1123 host name: dot-separated labels of 1-63 `[A-Za-z0-9-]`, no leading/trailing `-`, <= 253 total.
    Hostname,
    /// A host name, an IPv4 literal or an IPv6 literal (without brackets).
    Host,
    /// Dotted-quad IPv4 literal.
    Ipv4,
    /// The protocol's identifier rule (1-64 of `A-Z a-z 0-9 . _ : -`).
    Id,
    /// Any text without control characters (no newlines, escapes or NULs).
    Printable,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Hostname, Format::Host, Format::Ipv4, Format::Id, Format::Printable];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Hostname => "hostname",
            Format::Host => "host",
            Format::Ipv4 => "ipv4",
            Format::Id => "id",
            Format::Printable => "printable",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// What a matching value looks like, for error messages and docs.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Hostname => "a host name (letters, digits, '-' and '.' labels of 1-63 characters)",
            Format::Host => "a host name or an IP address",
            Format::Ipv4 => "an IPv4 address",
            Format::Id => "1-64 characters from A-Z a-z 0-9 . _ : -",
            Format::Printable => "text without control characters",
        }
    }

    pub fn matches(self, s: &str) -> bool {
        match self {
            Format::Hostname => is_hostname(s),
            Format::Host => is_hostname(s) || s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok(),
            Format::Ipv4 => s.parse::<Ipv4Addr>().is_ok(),
            Format::Id => validate_id("value", s).is_ok(),
            Format::Printable => !s.chars().any(char::is_control),
        }
    }
}

fn is_hostname(s: &str) -> bool {
    // All-numeric dotted names would be mistaken for (invalid) IPv4 addresses; refuse them as host names.
    let all_numeric = s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    !s.is_empty()
        && s.len() <= 253
        && !all_numeric
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A literal in the registry: a default or an allowed enum value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lit {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(&'static str),
}

impl Lit {
    pub fn to_value(self) -> Value {
        match self {
            Lit::Bool(b) => Value::Bool(b),
            Lit::Int(i) => Value::Int(i),
            Lit::Num(f) => Value::Float(f),
            Lit::Str(s) => Value::Text(s.to_owned()),
        }
    }

    fn matches(self, v: &Value) -> bool {
        match (self, v) {
            (Lit::Bool(a), Value::Bool(b)) => a == *b,
            (Lit::Int(a), Value::Int(b)) => a == *b,
            (Lit::Num(a), _) => v.as_f64() == Some(a),
            (Lit::Int(a), Value::Float(_)) => v.as_f64() == Some(a as f64),
            (Lit::Str(a), Value::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Num(n) => write!(f, "{n}"),
            Lit::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// At most `count` commands of one type per `per_secs` seconds on one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per_secs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Safety {
    /// Changes the device in a way an operator must own (reboot, factory reset).
    pub destructive: bool,
    /// The request must carry `confirm: true`; refused otherwise, by the shim and again by the agent.
    pub requires_confirmation: bool,
    /// Commands of this type running at once on one gateway; more are rejected.
    pub max_concurrent_per_gateway: u32,
    pub rate_limit: Option<RateLimit>,
    /// Device classes the command applies to: [`TARGET_CLASSES`].
    pub targets: &'static [&'static str],
}

impl Safety {
    /// Not destructive, no confirmation, one at a time per gateway, no rate limit, gateway only: the
    /// starting point for hand-written specs (test fixtures), which override what differs.
    pub const HARMLESS_GATEWAY: Safety = Safety {
        destructive: false,
        requires_confirmation: false,
        max_concurrent_per_gateway: 1,
        rate_limit: None,
        targets: &["gateway"],
    };
}

/// Schema of one parameter (or of the items of an array parameter, whose `name` is empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub description: &'static str,
    pub required: bool,
    /// Inclusive bounds for integer and number.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Bounds on a string's length in characters.
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    pub pattern: Option<Format>,
    /// Allowed values; empty means any.
    pub enum_values: &'static [Lit],
    pub min_items: Option<u32>,
    pub max_items: Option<u32>,
    /// Schema of each element of an array.
    pub items: Option<&'static ParamSpec>,
    /// Applied when an optional parameter is absent.
    pub default: Option<Lit>,
}

impl ParamSpec {
    /// A spec with only name and type set; the generator and tests fill in the rest with struct update syntax.
    pub const fn new(name: &'static str, ty: ParamType) -> ParamSpec {
        ParamSpec {
            name,
            ty,
            description: "",
            required: false,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            pattern: None,
            enum_values: &[],
            min_items: None,
            max_items: None,
            items: None,
            default: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommandSpec {
    /// e.g. `device.reboot`; also the key clients use.
    pub command_type: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// LwM2M-style object path, e.g. `/3/0/4`.
    pub path: &'static str,
    pub operation: Operation,
    /// Upper bound on execution time; a request may ask for less, never more.
    pub timeout_secs: u32,
    /// The command produces an artifact uploaded over HTTPS; the cloud mints an upload grant for it.
    pub artifact: bool,
    pub safety: Safety,
    pub params: &'static [ParamSpec],
}

impl CommandSpec {
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn targets(&self, class: &str) -> bool {
        self.safety.targets.contains(&class)
    }
}

/// Device classes a command may target. `gateway` is the gateway itself (no `target` in the request);
/// the others are children whose sensor type maps onto them through [`target_class`].
pub const TARGET_CLASSES: [&str; 3] = ["gateway", "camera", "nvr"];

/// The target class of a sensor type: `CAMERA` -> `camera`, `NVR` -> `nvr`, the gateway -> `gateway`;
/// `None` for types no command targets (radar, ANPR, ...).
pub fn target_class(sensor_type: &str) -> Option<&'static str> {
    match sensor_type {
        crate::SensorType::EDGE_CONTROLLER => Some("gateway"),
        crate::SensorType::CAMERA => Some("camera"),
        crate::SensorType::NVR => Some("nvr"),
        _ => None,
    }
}

/// Looks a command type up in a generated table.
pub fn find(registry: &'static [CommandSpec], command_type: &str) -> Option<&'static CommandSpec> {
    registry.iter().find(|c| c.command_type == command_type)
}

/// Which rule a parameter broke; the string form is what the API reports as `rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `params` itself is not an object.
    Object,
    /// A parameter the registry does not declare.
    Unknown,
    Required,
    Type,
    Min,
    Max,
    MinLength,
    MaxLength,
    Pattern,
    Enum,
    MinItems,
    MaxItems,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Object => "object",
            Rule::Unknown => "unknown",
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::Min => "min",
            Rule::Max => "max",
            Rule::MinLength => "minLength",
            Rule::MaxLength => "maxLength",
            Rule::Pattern => "pattern",
            Rule::Enum => "enum",
            Rule::MinItems => "minItems",
            Rule::MaxItems => "maxItems",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter broke a rule. `field` is the path inside `params` (`port`, `include[1]`, or empty for the
/// whole object).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("parameter {field:?} breaks rule {rule}: {message}")]
pub struct ParamError {
    pub field: String,
    pub rule: Rule,
    pub message: String,
}

impl ParamError {
    fn new(field: &str, rule: Rule, message: impl Into<String>) -> ParamError {
        ParamError { field: field.to_owned(), rule, message: message.into() }
    }
}

/// Why a command request is refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
    #[error("unknown command type {0:?}")]
    UnknownType(String),
    #[error("{0} is destructive and requires explicit confirmation (confirm: true)")]
    ConfirmationRequired(&'static str),
    #[error(transparent)]
    Param(#[from] ParamError),
}

/// Everything both sides check before accepting a command: the type exists, confirmation is present
/// when required, and the parameters satisfy the schema. Returns the spec and the parameters with
/// defaults applied.
pub fn check_command(
    registry: &'static [CommandSpec],
    command_type: &str,
    params: &Value,
    confirm: bool,
) -> Result<(&'static CommandSpec, Value), CheckError> {
    let spec = find(registry, command_type).ok_or_else(|| CheckError::UnknownType(command_type.to_owned()))?;
    if spec.safety.requires_confirmation && !confirm {
        return Err(CheckError::ConfirmationRequired(spec.command_type));
    }
    let params = validate_params(spec, params)?;
    Ok((spec, params))
}

/// Validates `params` (a map; `Null` counts as empty) against the command's schema. Unknown parameters are
/// refused, so a typo never silently falls back to a default. Returns the parameters with defaults
/// applied and integers normalised.
pub fn validate_params(spec: &CommandSpec, params: &Value) -> Result<Value, ParamError> {
    let empty = BTreeMap::new();
    let given = match params {
        Value::Null => &empty,
        Value::Map(m) => m,
        other => return Err(ParamError::new("", Rule::Object, format!("params must be an object, got {}", other.type_name()))),
    };
    if let Some(unknown) = given.keys().find(|k| spec.param(k).is_none()) {
        let known: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
        let msg = if known.is_empty() {
            format!("{} takes no parameters", spec.command_type)
        } else {
            format!("not a parameter of {} (known: {})", spec.command_type, known.join(", "))
        };
        return Err(ParamError::new(unknown, Rule::Unknown, msg));
    }
    let mut out = BTreeMap::new();
    for p in spec.params {
        match given.get(p.name) {
            None | Some(Value::Null) => {
                if p.required {
                    return Err(ParamError::new(p.name, Rule::Required, "is required"));
                }
                if let Some(d) = p.default {
                    out.insert(p.name.to_owned(), d.to_value());
                }
            }
            Some(v) => {
                out.insert(p.name.to_owned(), validate_value(p, p.name, v)?);
            }
        }
    }
    Ok(Value::Map(out))
}

/// Validates one value against a parameter spec; `field` names it in errors.
pub fn validate_value(p: &ParamSpec, field: &str, v: &Value) -> Result<Value, ParamError> {
    let type_err = || ParamError::new(field, Rule::Type, format!("must be {}, got {}", article(p.ty), v.type_name()));
    let out = match p.ty {
        ParamType::Integer => {
            let i = v.as_i64().ok_or_else(type_err)?;
            check_range(p, field, i as f64, &i.to_string())?;
            Value::Int(i)
        }
        ParamType::Number => {
            let f = v.as_f64().filter(|f| f.is_finite()).ok_or_else(type_err)?;
            check_range(p, field, f, &f.to_string())?;
            v.clone()
        }
        ParamType::Boolean => Value::Bool(v.as_bool().ok_or_else(type_err)?),
        ParamType::String => {
            let s = v.as_str().ok_or_else(type_err)?;
            let n = s.chars().count();
            if let Some(min) = p.min_length {
                if n < min as usize {
                    return Err(ParamError::new(field, Rule::MinLength, format!("must be at least {min} characters, got {n}")));
                }
            }
            if let Some(max) = p.max_length {
                if n > max as usize {
                    return Err(ParamError::new(field, Rule::MaxLength, format!("must be at most {max} characters, got {n}")));
                }
            }
            if let Some(fmt) = p.pattern {
                if !fmt.matches(s) {
                    return Err(ParamError::new(field, Rule::Pattern, format!("must be {} ({})", fmt.describe(), fmt.as_str())));
                }
            }
            v.clone()
        }
        ParamType::Array => {
            let a = v.as_array().ok_or_else(type_err)?;
            if let Some(min) = p.min_items {
                if a.len() < min as usize {
                    return Err(ParamError::new(
                        field,
                        Rule::MinItems,
                        format!("must have at least {min} items, got {}", a.len()),
                    ));
                }
            }
            if let Some(max) = p.max_items {
                if a.len() > max as usize {
                    return Err(ParamError::new(
                        field,
                        Rule::MaxItems,
                        format!("must have at most {max} items, got {}", a.len()),
                    ));
                }
            }
            let mut items = Vec::with_capacity(a.len());
            for (i, item) in a.iter().enumerate() {
                let f = format!("{field}[{i}]");
                items.push(match p.items {
                    Some(ip) => validate_value(ip, &f, item)?,
                    None => item.clone(),
                });
            }
            Value::Array(items)
        }
    };
    if !p.enum_values.is_empty() && !p.enum_values.iter().any(|l| l.matches(&out)) {
        let allowed: Vec<String> = p.enum_values.iter().map(Lit::to_string).collect();
        return Err(ParamError::new(field, Rule::Enum, format!("must be one of {}", allowed.join(", "))));
    }
    Ok(out)
}

fn check_range(p: &ParamSpec, field: &str, x: f64, shown: &str) -> Result<(), ParamError> {
    if let Some(min) = p.min {
        if x < min {
            return Err(ParamError::new(field, Rule::Min, format!("must be at least {min}, got {shown}")));
        }
    }
    if let Some(max) = p.max {
        if x > max {
            return Err(ParamError::new(field, Rule::Max, format!("must be at most {max}, got {shown}")));
        }
    }
    Ok(())
}

fn article(t: ParamType) -> &'static str {
    match t {
        ParamType::Integer => "an integer",
        ParamType::Number => "a number",
        ParamType::String => "a string",
        ParamType::Boolean => "a boolean",
        ParamType::Array => "an array",
    }
}

/// Consistency rules for a registry table, checked by the generator before it writes anything (and by
/// tests of the generated tables): unique types, well-formed paths, sane safety metadata, and defaults
/// that satisfy their own parameter's rules.
pub fn check_registry(registry: &[CommandSpec]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in registry {
        let t = c.command_type;
        if !seen.insert(t) {
            return Err(format!("command type {t:?} appears twice"));
        }
        validate_id("command type", t).map_err(|e| format!("{t}: {e}"))?;
        let path_ok = c.path.starts_with('/')
            && c.path[1..].split('/').count() <= 3
            && c.path[1..].split('/').all(|s| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()));
        if !path_ok {
            return Err(format!("{t}: path {:?} is not an LwM2M path like /3/0/4", c.path));
        }
        if c.timeout_secs == 0 || c.timeout_secs > 86_400 {
            return Err(format!("{t}: timeoutSecs must be 1..=86400"));
        }
        if c.safety.destructive && !c.safety.requires_confirmation {
            return Err(format!("{t}: destructive commands must require confirmation"));
        }
        if c.safety.max_concurrent_per_gateway == 0 {
            return Err(format!("{t}: maxConcurrentPerGateway must be at least 1"));
        }
        if let Some(r) = c.safety.rate_limit {
            if r.count == 0 || r.per_secs == 0 {
                return Err(format!("{t}: rateLimit count and perSecs must be positive"));
            }
        }
        if c.safety.targets.is_empty() {
            return Err(format!("{t}: targets must name at least one device class"));
        }
        if let Some(bad) = c.safety.targets.iter().find(|x| !TARGET_CLASSES.contains(x)) {
            return Err(format!("{t}: unknown target class {bad:?} (known: {})", TARGET_CLASSES.join(", ")));
        }
        let mut names = std::collections::BTreeSet::new();
        for p in c.params {
            if !names.insert(p.name) {
                return Err(format!("{t}: parameter {:?} appears twice", p.name));
            }
            check_param_spec(t, p)?;
        }
    }
    Ok(())
}

fn check_param_spec(t: &str, p: &ParamSpec) -> Result<(), String> {
    let n = p.name;
    let numeric = matches!(p.ty, ParamType::Integer | ParamType::Number);
    if !numeric && (p.min.is_some() || p.max.is_some()) {
        return Err(format!("{t}.{n}: min/max apply to integer and number only"));
    }
    if p.ty != ParamType::String && (p.min_length.is_some() || p.max_length.is_some() || p.pattern.is_some()) {
        return Err(format!("{t}.{n}: minLength/maxLength/pattern apply to strings only"));
    }
    if p.ty != ParamType::Array && (p.min_items.is_some() || p.max_items.is_some() || p.items.is_some()) {
        return Err(format!("{t}.{n}: minItems/maxItems/items apply to arrays only"));
    }
    if let (Some(a), Some(b)) = (p.min, p.max) {
        if a > b {
            return Err(format!("{t}.{n}: min > max"));
        }
    }
    if p.required && p.default.is_some() {
        return Err(format!("{t}.{n}: a required parameter cannot have a default"));
    }
    if let Some(items) = p.items {
        check_param_spec(t, items)?;
    }
    for l in p.enum_values {
        validate_value(&ParamSpec { enum_values: &[], ..*p }, n, &l.to_value())
            .map_err(|e| format!("{t}.{n}: enum value {l} is invalid: {e}"))?;
    }
    if let Some(d) = p.default {
        validate_value(p, n, &d.to_value()).map_err(|e| format!("{t}.{n}: default {d} is invalid: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    static ITEM: ParamSpec =
        ParamSpec { enum_values: &[Lit::Str("logs"), Lit::Str("config")], ..ParamSpec::new("", ParamType::String) };
    static PARAMS: [ParamSpec; 7] = [
        ParamSpec {
            required: true,
            pattern: Some(Format::Host),
            min_length: Some(1),
            max_length: Some(20),
            ..ParamSpec::new("host", ParamType::String)
        },
        ParamSpec { required: true, min: Some(1.0), max: Some(65535.0), ..ParamSpec::new("port", ParamType::Integer) },
        ParamSpec {
            default: Some(Lit::Int(3000)),
            min: Some(50.0),
            max: Some(10000.0),
            ..ParamSpec::new("timeoutMs", ParamType::Integer)
        },
        ParamSpec { min: Some(0.5), max: Some(2.5), ..ParamSpec::new("ratio", ParamType::Number) },
        ParamSpec { default: Some(Lit::Bool(false)), ..ParamSpec::new("verbose", ParamType::Boolean) },
        ParamSpec { enum_values: &[Lit::Str("error"), Lit::Str("warn")], ..ParamSpec::new("level", ParamType::String) },
        ParamSpec { min_items: Some(1), max_items: Some(2), items: Some(&ITEM), ..ParamSpec::new("include", ParamType::Array) },
    ];
    static SPEC: CommandSpec = CommandSpec {
        command_type: "net.test",
        title: "t",
        description: "",
        path: "/32770/0/9",
        operation: Operation::Execute,
        timeout_secs: 10,
        artifact: false,
        safety: Safety::HARMLESS_GATEWAY,
        params: &PARAMS,
    };
    static DESTRUCTIVE: CommandSpec = CommandSpec {
        command_type: "device.reboot",
        safety: Safety { destructive: true, requires_confirmation: true, ..SPEC.safety },
        params: &[],
        ..SPEC
    };
    static REGISTRY: [CommandSpec; 2] = [SPEC, DESTRUCTIVE];

    fn base() -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert("host".into(), Value::from("example.org"));
        m.insert("port".into(), Value::Int(443));
        m
    }

    fn with(k: &str, v: Value) -> Value {
        let mut m = base();
        m.insert(k.into(), v);
        Value::Map(m)
    }

    fn without(k: &str) -> Value {
        let mut m = base();
        m.remove(k);
        Value::Map(m)
    }

    fn err(v: Value) -> (String, Rule) {
        let e = validate_params(&SPEC, &v).expect_err("must be refused");
        (e.field, e.rule)
    }

    #[test]
    fn defaults_applied_and_ints_normalised() {
        let out = validate_params(&SPEC, &with("port", Value::Float(80.0))).unwrap();
        assert_eq!(out.get("port"), Some(&Value::Int(80)));
        assert_eq!(out.get("timeoutMs"), Some(&Value::Int(3000)));
        assert_eq!(out.get("verbose"), Some(&Value::Bool(false)));
        assert_eq!(out.get("level"), None, "no default, absent");
    }

    #[test]
    fn each_rule() {
        assert_eq!(err(Value::Array(vec![])), ("".into(), Rule::Object));
        assert_eq!(err(with("bogus", Value::Int(1))), ("bogus".into(), Rule::Unknown));
        assert_eq!(err(without("port")), ("port".into(), Rule::Required));
        assert_eq!(err(with("port", Value::Null)), ("port".into(), Rule::Required));
        assert_eq!(err(with("port", "443".into())), ("port".into(), Rule::Type));
        assert_eq!(err(with("port", Value::Float(1.5))), ("port".into(), Rule::Type));
        assert_eq!(err(with("port", Value::Int(0))), ("port".into(), Rule::Min));
        assert_eq!(err(with("port", Value::Int(70000))), ("port".into(), Rule::Max));
        assert_eq!(err(with("ratio", Value::Float(0.1))), ("ratio".into(), Rule::Min));
        assert_eq!(err(with("ratio", Value::Int(3))), ("ratio".into(), Rule::Max));
        assert_eq!(err(with("ratio", Value::Float(f64::NAN))), ("ratio".into(), Rule::Type));
        assert_eq!(err(with("verbose", Value::Int(1))), ("verbose".into(), Rule::Type));
        assert_eq!(err(with("host", "".into())), ("host".into(), Rule::MinLength));
        assert_eq!(err(with("host", "a".repeat(21).into())), ("host".into(), Rule::MaxLength));
        assert_eq!(err(with("host", "bad host;rm".into())), ("host".into(), Rule::Pattern));
        assert_eq!(err(with("level", "info".into())), ("level".into(), Rule::Enum));
        assert_eq!(err(with("include", Value::Array(vec![]))), ("include".into(), Rule::MinItems));
        let three = Value::Array(vec!["logs".into(), "logs".into(), "logs".into()]);
        assert_eq!(err(with("include", three)), ("include".into(), Rule::MaxItems));
        let bad_item = Value::Array(vec!["logs".into(), "secrets".into()]);
        assert_eq!(err(with("include", bad_item)), ("include[1]".into(), Rule::Enum));
        assert_eq!(err(with("include", "logs".into())), ("include".into(), Rule::Type));
    }

    #[test]
    fn valid_values_pass() {
        for host in ["example.org", "10.0.0.1", "::1", "gw-1", "a.b-c.d"] {
            assert!(validate_params(&SPEC, &with("host", host.into())).is_ok(), "{host}");
        }
        let ok = with("include", Value::Array(vec!["logs".into(), "config".into()]));
        assert!(validate_params(&SPEC, &ok).is_ok());
        assert!(validate_params(&SPEC, &with("level", "warn".into())).is_ok());
        assert!(validate_params(&SPEC, &with("ratio", Value::Int(1))).is_ok());
    }

    #[test]
    fn formats() {
        assert!(Format::Hostname.matches("a-b.example"));
        for bad in ["-a", "a-", "a..b", "", "1.2.3.4", "a_b", &"a".repeat(64)] {
            assert!(!Format::Hostname.matches(bad), "{bad:?}");
        }
        assert!(Format::Ipv4.matches("192.168.1.1") && !Format::Ipv4.matches("256.1.1.1"));
        assert!(Format::Host.matches("fe80::1") && !Format::Host.matches("[::1]"));
        assert!(Format::Id.matches("cmd-1") && !Format::Id.matches("a/b"));
        assert!(Format::Printable.matches("some text") && !Format::Printable.matches("a\nb"));
    }

    #[test]
    fn check_command_rules() {
        assert!(matches!(check_command(&REGISTRY, "nope", &Value::Null, false), Err(CheckError::UnknownType(_))));
        assert!(matches!(
            check_command(&REGISTRY, "device.reboot", &Value::Null, false),
            Err(CheckError::ConfirmationRequired("device.reboot"))
        ));
        assert!(check_command(&REGISTRY, "device.reboot", &Value::Null, true).is_ok());
        let e = check_command(&REGISTRY, "device.reboot", &Value::map([("x", Value::Int(1))]), true).unwrap_err();
        assert!(e.to_string().contains("takes no parameters"), "{e}");
    }

    #[test]
    fn registry_consistency() {
        assert!(check_registry(&REGISTRY).is_ok());
        let dup = [SPEC, SPEC];
        assert!(check_registry(&dup).unwrap_err().contains("twice"));
        let bad_path = [CommandSpec { path: "3/0", ..SPEC }];
        assert!(check_registry(&bad_path).unwrap_err().contains("path"));
        let unconfirmed = [CommandSpec { safety: Safety { destructive: true, ..SPEC.safety }, ..SPEC }];
        assert!(check_registry(&unconfirmed).unwrap_err().contains("confirmation"));
        static BAD_DEFAULT: [ParamSpec; 1] =
            [ParamSpec { default: Some(Lit::Int(5)), min: Some(10.0), ..ParamSpec::new("x", ParamType::Integer) }];
        let bad_default = [CommandSpec { params: &BAD_DEFAULT, ..SPEC }];
        assert!(check_registry(&bad_default).unwrap_err().contains("default"));
    }
}
