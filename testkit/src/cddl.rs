//! Validation of CBOR payloads against `docs/protocol.cddl` with the independent `cddl` crate.

use std::path::PathBuf;

/// Path of the normative CDDL.
pub fn protocol_cddl_path() -> PathBuf {
    crate::workspace_root().join("docs").join("protocol.cddl")
}

/// The CDDL text prepared for the `cddl` crate with `rule` as its root.
///
/// Two adaptations, both semantics-preserving: the crate validates against the first rule, so a
/// `scs-root = <rule>` line goes first; and RFC 8610 regexps are implicitly anchored (XSD) while the
/// crate searches unanchored, so every `.regexp "X"` becomes `.regexp "^(?:X)$"`.
pub fn cddl_for_rule(rule: &str) -> String {
    let path = protocol_cddl_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = format!("scs-root = {rule}\n");
    let mut rest = text.as_str();
    const MARK: &str = ".regexp \"";
    while let Some(i) = rest.find(MARK) {
        let (head, tail) = rest.split_at(i + MARK.len());
        let end = tail.find('"').unwrap_or_else(|| panic!("unterminated .regexp string in {}", path.display()));
        out.push_str(head);
        out.push_str("^(?:");
        out.push_str(&tail[..end]);
        out.push_str(")$");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Validates `cbor` against rule `rule` of `docs/protocol.cddl`; `Err` carries the validator's report.
pub fn validate(rule: &str, cbor: &[u8]) -> Result<(), String> {
    let cddl = cddl_for_rule(rule);
    cddl::validate_cbor_from_slice(&cddl, cbor, None).map_err(|e| format!("{rule}: {e}"))
}

/// Validates `cbor` against the first rule of the CDDL document `doc` (for tests of the validator itself).
pub fn validate_doc(doc: &str, cbor: &[u8]) -> Result<(), String> {
    cddl::validate_cbor_from_slice(doc, cbor, None).map_err(|e| e.to_string())
}
