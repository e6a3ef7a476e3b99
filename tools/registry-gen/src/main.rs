//! `cargo run -p registry-gen` regenerates every file derived from `protocol/registry/commands.json`;
//! `cargo run -p registry-gen -- --check` only reports stale files and exits 1 if there are any.
//! `--root DIR` points at another checkout (default: the workspace this tool was built in).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut root = registry_gen::default_root();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--check" => check = true,
            "--root" => match args.next() {
                Some(r) => root = PathBuf::from(r),
                None => return usage("--root needs a directory"),
            },
            "-h" | "--help" => {
                println!("usage: registry-gen [--check] [--root DIR]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let result = if check { registry_gen::stale_files(&root) } else { registry_gen::write_all(&root) };
    match result {
        Ok(paths) if check && !paths.is_empty() => {
            for p in &paths {
                eprintln!("stale: {}", p.display());
            }
            eprintln!("run `cargo run -p registry-gen` to regenerate");
            ExitCode::FAILURE
        }
        Ok(paths) => {
            for p in &paths {
                println!("wrote {}", p.display());
            }
            if check {
                println!("generated files are up to date");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("registry-gen: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("registry-gen: {msg}\nusage: registry-gen [--check] [--root DIR]");
    ExitCode::from(2)
}
