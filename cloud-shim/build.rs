//! Embeds every `migrations/*.sql` file, in name order, so adding a migration needs no code change.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read when the script runs, not when it was compiled, so a target directory moved between checkouts
    // embeds this checkout's migrations.
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for build scripts");
    let dir = Path::new(&root).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("cloud-shim/migrations must exist")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut out = String::from(
        "/// `(name, sql)` of every migration, in the order they apply.\npub const MIGRATIONS: &[(&str, &str)] = &[\n",
    );
    for n in &names {
        println!("cargo:rerun-if-changed={}", dir.join(n).display());
        // Wrangler records the full file name in d1_migrations.name; so do we.
        writeln!(out, "    ({n:?}, include_str!({:?})),", dir.join(n).display().to_string()).expect("writing to a String");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations_gen.rs");
    std::fs::write(dest, out).expect("write migrations_gen.rs");
}
