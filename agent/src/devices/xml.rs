//! A small, bounded XML scanner for SOAP/ISAPI answers. Elements are matched by local name, whatever
//! their prefix (`tds:`, `SOAP-ENV:`, none): devices disagree on prefixes and namespace URIs matter
//! less than the shape. Linear time, nesting capped, no DTDs or entity expansion (a DOCTYPE is
//! rejected), so hostile input costs bounded work. Input size is capped by the HTTP layer.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    #[error("mismatched end tag")]
    Mismatched,
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("DOCTYPE not accepted")]
    Doctype,
    #[error("no root element")]
    Empty,
}

pub const MAX_DEPTH: usize = 64;

/// An element found by [`Doc::find`]: local name, raw attribute text and raw inner content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    pub name: &'a str,
    attrs: &'a str,
    pub inner: &'a str,
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// One tag as the tokenizer sees it.
enum Tag<'a> {
    Open { name: &'a str, attrs: &'a str, self_closing: bool, end: usize },
    Close { name: &'a str, end: usize },
    Skip { end: usize },
}

/// Reads the tag starting at byte `at` (which is `<`).
fn tag(s: &str, at: usize) -> Result<Tag<'_>, XmlError> {
    let rest = s.get(at..).ok_or(XmlError::Unterminated("tag"))?;
    let skip_to = |open: &str, close: &'static str, what: &'static str| -> Result<Tag<'_>, XmlError> {
        let body = rest.get(open.len()..).ok_or(XmlError::Unterminated(what))?;
        let i = body.find(close).ok_or(XmlError::Unterminated(what))?;
        Ok(Tag::Skip { end: at + open.len() + i + close.len() })
    };
    if rest.starts_with("<!--") {
        return skip_to("<!--", "-->", "comment");
    }
    if rest.starts_with("<![CDATA[") {
        return skip_to("<![CDATA[", "]]>", "CDATA");
    }
    if rest.starts_with("<?") {
        return skip_to("<?", "?>", "processing instruction");
    }
    if rest.starts_with("<!") {
        return Err(XmlError::Doctype);
    }
    // Find the closing '>' outside quoted attribute values.
    let mut quote: Option<char> = None;
    let mut close_at = None;
    for (i, c) in rest.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => {
                close_at = Some(i);
                break;
            }
            (None, '<') => return Err(XmlError::Unterminated("tag")),
            _ => {}
        }
    }
    let close_at = close_at.ok_or(XmlError::Unterminated("tag"))?;
    let inside = rest.get(1..close_at).ok_or(XmlError::Unterminated("tag"))?;
    let end = at + close_at + 1;
    if let Some(name) = inside.strip_prefix('/') {
        return Ok(Tag::Close { name: local(name.trim()), end });
    }
    let (inside, self_closing) = match inside.strip_suffix('/') {
        Some(i) => (i, true),
        None => (inside, false),
    };
    let name_end = inside.find(|c: char| c.is_whitespace()).unwrap_or(inside.len());
    let (name, attrs) = inside.split_at_checked(name_end).unwrap_or((inside, ""));
    if name.is_empty() {
        return Err(XmlError::Unterminated("tag name"));
    }
    Ok(Tag::Open { name: local(name), attrs, self_closing, end })
}

/// A checked document: well-nested, bounded depth.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    text: &'a str,
}

impl<'a> Doc<'a> {
    /// Validates nesting once, so later lookups can rely on it.
    pub fn parse(text: &'a str) -> Result<Doc<'a>, XmlError> {
        let mut stack: heapless::Vec<&str, MAX_DEPTH> = heapless::Vec::new();
        let mut pos = 0;
        let mut seen_root = false;
        while let Some(off) = text.get(pos..).and_then(|r| r.find('<')) {
            let at = pos + off;
            pos = match tag(text, at)? {
                Tag::Skip { end } => end,
                Tag::Open { name, self_closing, end, .. } => {
                    seen_root = true;
                    if !self_closing {
                        stack.push(name).map_err(|_| XmlError::TooDeep)?;
                    }
                    end
                }
                Tag::Close { name, end } => {
                    if stack.pop() != Some(name) {
                        return Err(XmlError::Mismatched);
                    }
                    end
                }
            };
        }
        if !stack.is_empty() {
            return Err(XmlError::Unterminated("element"));
        }
        if !seen_root {
            return Err(XmlError::Empty);
        }
        Ok(Doc { text })
    }

    /// All elements named `name` (local name), in document order, nested ones included.
    pub fn find(&self, name: &str) -> Vec<Element<'a>> {
        find_in(self.text, name)
    }

    /// Text of the first element named `name`, entity-decoded and trimmed.
    pub fn text(&self, name: &str) -> Option<String> {
        self.find(name).first().map(Element::text)
    }
}

fn find_in<'a>(text: &'a str, want: &str) -> Vec<Element<'a>> {
    // (position of the open tag, element), sorted by position at the end.
    let mut out: Vec<(usize, Element<'a>)> = Vec::new();
    // (name, attrs, open-tag position, content start) of open elements.
    let mut stack: Vec<(&str, &str, usize, usize)> = Vec::new();
    let mut pos = 0;
    while let Some(off) = text.get(pos..).and_then(|r| r.find('<')) {
        let at = pos + off;
        let Ok(t) = tag(text, at) else { break };
        pos = match t {
            Tag::Skip { end } => end,
            Tag::Open { name, attrs, self_closing: true, end } => {
                if name == want {
                    out.push((at, Element { name, attrs, inner: "" }));
                }
                end
            }
            Tag::Open { name, attrs, self_closing: false, end } => {
                stack.push((name, attrs, at, end));
                end
            }
            Tag::Close { end, .. } => {
                if let Some((name, attrs, open_at, start)) = stack.pop() {
                    if name == want {
                        out.push((open_at, Element { name, attrs, inner: text.get(start..at).unwrap_or("") }));
                    }
                }
                end
            }
        };
    }
    // Close-tag order is inner-first; callers expect document order.
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, e)| e).collect()
}

impl<'a> Element<'a> {
    /// Child/descendant elements named `name`.
    pub fn find(&self, name: &str) -> Vec<Element<'a>> {
        find_in(self.inner, name)
    }

    /// First descendant's text.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.find(name).first().map(Element::text)
    }

    /// Text content: markup removed, CDATA kept, entities decoded, trimmed.
    pub fn text(&self) -> String {
        let mut raw = String::new();
        let s = self.inner;
        let mut pos = 0;
        while let Some(off) = s.get(pos..).and_then(|r| r.find('<')) {
            let at = pos + off;
            raw.push_str(&decode(s.get(pos..at).unwrap_or("")));
            let rest = s.get(at..).unwrap_or("");
            if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
                let i = cdata.find("]]>").unwrap_or(cdata.len());
                raw.push_str(cdata.get(..i).unwrap_or(""));
                pos = at + 9 + i + 3;
                continue;
            }
            pos = match tag(s, at) {
                Ok(Tag::Open { end, .. } | Tag::Close { end, .. } | Tag::Skip { end }) => end,
                Err(_) => s.len(),
            };
        }
        raw.push_str(&decode(s.get(pos..).unwrap_or("")));
        raw.trim().to_owned()
    }

    /// Attribute value by local name, entity-decoded.
    pub fn attr(&self, name: &str) -> Option<String> {
        let mut rest = self.attrs;
        loop {
            rest = rest.trim_start();
            let eq = rest.find('=')?;
            let (k, after) = rest.split_at_checked(eq)?;
            let after = after.get(1..)?.trim_start();
            let q = after.chars().next()?;
            if q != '"' && q != '\'' {
                return None;
            }
            let body = after.get(1..)?;
            let end = body.find(q)?;
            if local(k.trim()) == name {
                return Some(decode(body.get(..end)?));
            }
            rest = body.get(end + 1..)?;
        }
    }
}

/// Decodes the five predefined entities and numeric references; anything else is kept verbatim.
pub fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        let (before, from) = rest.split_at_checked(i).unwrap_or((rest, ""));
        out.push_str(before);
        let Some(semi) = from.get(..12.min(from.len())).and_then(|w| w.find(';')) else {
            out.push('&');
            rest = from.get(1..).unwrap_or("");
            continue;
        };
        let ent = from.get(1..semi).unwrap_or("");
        let ch = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| ent.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = from.get(semi + 1..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = from.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for element content or attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_local_name_whatever_the_prefix() {
        for (env, dev) in [("s", "tds"), ("SOAP-ENV", "ns2"), ("", "")] {
            let p = |x: &str| if x.is_empty() { String::new() } else { format!("{x}:") };
            let (e, d) = (p(env), p(dev));
            let xml = format!(
                "<?xml version=\"1.0\"?><{e}Envelope xmlns:a='x'><{e}Body><{d}GetDeviceInformationResponse>\
                 <{d}Manufacturer>ACME &amp; Sons</{d}Manufacturer><{d}Model><![CDATA[X<1>]]></{d}Model>\
                 <!-- a comment <not a tag> --><{d}SerialNumber/></{d}GetDeviceInformationResponse></{e}Body></{e}Envelope>"
            );
            let doc = Doc::parse(&xml).unwrap();
            assert_eq!(doc.text("Manufacturer").as_deref(), Some("ACME & Sons"));
            assert_eq!(doc.text("Model").as_deref(), Some("X<1>"));
            assert_eq!(doc.text("SerialNumber").as_deref(), Some(""));
            assert_eq!(doc.text("Missing"), None);
        }
    }

    #[test]
    fn nested_and_repeated_elements_in_document_order() {
        let xml = "<r><P token=\"a\"><Name>one</Name><P token='inner'/></P><P token=\"b&amp;c\"><Name>two</Name></P></r>";
        let doc = Doc::parse(xml).unwrap();
        let ps = doc.find("P");
        let tokens: Vec<_> = ps.iter().map(|p| p.attr("token").unwrap()).collect();
        assert_eq!(tokens, ["a", "inner", "b&c"]);
        assert_eq!(ps.first().unwrap().child_text("Name").as_deref(), Some("one"));
    }

    #[test]
    fn hostile_input_is_rejected_not_panicking() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(Doc::parse(&deep).unwrap_err(), XmlError::TooDeep);
        assert_eq!(Doc::parse("<!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>").unwrap_err(), XmlError::Doctype);
        assert_eq!(Doc::parse("<a><b></a>").unwrap_err(), XmlError::Mismatched);
        assert!(Doc::parse("<a><b").is_err());
        assert_eq!(Doc::parse("garbage").unwrap_err(), XmlError::Empty);
        for g in ["<", "<>", "</", "<a attr=\"x>", "<a>&#xFFFFFFFF;&#;&</a>", "<a/><!--", "\u{0}<\u{ff}>"] {
            let _ = Doc::parse(g).map(|d| d.text("a"));
        }
        assert_eq!(decode("&#x41;&#66;&bogus;&"), "AB&bogus;&");
    }

    #[test]
    fn escape_round_trips() {
        let s = "a<b>&\"c'";
        assert_eq!(decode(&escape(s)), s);
    }
}
