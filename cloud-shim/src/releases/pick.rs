//! Which build of a release fits a gateway. Plain std only: the Worker compiles this file too
//! (`worker/src/releases/mod.rs`), so both clouds pick the same build and refuse with the same words.

/// The `std::env::consts::ARCH` an agent built for Rust target `triple` reports in its inventory
/// (`arch`): `armv7-…` and `thumbv7neon-…` are `arm`, `i686-…` is `x86`, `riscv64gc-…` is `riscv64`.
pub fn arch_of_target(triple: &str) -> String {
    let first = triple.split('-').next().unwrap_or(triple);
    if first.starts_with("arm") || first.starts_with("thumb") {
        "arm".into()
    } else if matches!(first, "i386" | "i486" | "i586" | "i686") {
        "x86".into()
    } else if first.starts_with("riscv64") {
        "riscv64".into()
    } else if first.starts_with("mips64") {
        "mips64".into()
    } else if first.starts_with("mips") {
        "mips".into()
    } else {
        first.to_owned()
    }
}

/// The index in `targets` (the target triples of `version`'s builds) of the one to offer `gateway`:
/// the one whose arch is the `arch` its inventory reports (and `triple` when given); without a
/// reported arch, `triple` or the only one. `Err` is the reason of a 409.
pub fn choose(gateway: &str, version: &str, arch: Option<&str>, targets: &[&str], triple: Option<&str>) -> Result<usize, String> {
    let fits = |t: &str| triple.is_none_or(|want| t == want) && arch.is_none_or(|a| arch_of_target(t) == a);
    let matching: Vec<usize> = targets.iter().enumerate().filter(|(_, t)| fits(t)).map(|(i, _)| i).collect();
    match (matching.as_slice(), arch) {
        ([one], _) => Ok(*one),
        ([], Some(arch)) => Err(format!(
            "gateway {gateway} reports arch {arch}; release {version} is built for {} (none runs there{})",
            targets.join(", "),
            triple.map(|t| format!(", or not as {t}")).unwrap_or_default()
        )),
        ([], None) => {
            Err(format!("release {version} has no build for target {} (it has {})", triple.unwrap_or("?"), targets.join(", ")))
        }
        (_, _) => Err(format!(
            "gateway {gateway} has not reported its arch yet and release {version} has several targets ({}): name one in targetTriple",
            targets.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_match_what_agents_report() {
        for (triple, arch) in [
            ("armv7-unknown-linux-gnueabihf", "arm"),
            ("thumbv7neon-unknown-linux-gnueabihf", "arm"),
            ("arm-unknown-linux-gnueabi", "arm"),
            ("aarch64-unknown-linux-musl", "aarch64"),
            ("x86_64-unknown-linux-gnu", "x86_64"),
            ("i686-unknown-linux-gnu", "x86"),
            ("riscv64gc-unknown-linux-gnu", "riscv64"),
        ] {
            assert_eq!(arch_of_target(triple), arch, "{triple}");
        }
    }

    #[test]
    fn the_build_for_the_reported_arch_is_chosen() {
        let t = ["aarch64-unknown-linux-gnu", "armv7-unknown-linux-gnueabihf"];
        assert_eq!(choose("gw", "1.0", Some("arm"), &t, None), Ok(1));
        assert_eq!(choose("gw", "1.0", None, &t, Some("aarch64-unknown-linux-gnu")), Ok(0));
        assert!(choose("gw", "1.0", Some("x86_64"), &t, None).unwrap_err().contains("none runs there"));
        assert!(choose("gw", "1.0", None, &t, None).unwrap_err().contains("targetTriple"));
        assert_eq!(choose("gw", "1.0", None, &t[..1], None), Ok(0));
    }
}
