//! Command-line options shared by every subcommand.

/// `--key value` options after the subcommand.
pub struct Opts(Vec<(String, String)>);

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            out.push((key.to_owned(), value.clone()));
        }
        Ok(Opts(out))
    }

    pub fn str(&self, key: &str, default: &str) -> String {
        self.0.iter().rev().find(|(k, _)| k == key).map_or_else(|| default.to_owned(), |(_, v)| v.clone())
    }

    pub fn num(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.0.iter().rev().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| format!("--{key} takes a number, not {v:?}")),
        }
    }
}
