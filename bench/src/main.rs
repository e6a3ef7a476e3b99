//! `scs-bench`: the measurements behind `scripts/bench` that need a program.
//!
//! ```text
//! scs-bench size                                  encoded batch size, CBOR vs the same batch as JSON
//! scs-bench raw-insert [--n N] [--dir DIR]        raw rusqlite insert baselines on DIR's disk
//! scs-bench drain [--batches N] [--devices N] [--broker embedded|mosquitto]
//!                                                 one day of a site's backlog through agent + shim
//! scs-bench rss [--secs N] [--devices N]          agent RSS at steady state with N devices configured
//! scs-bench sign [--n N] [--devices N] [--dir DIR] COSE_Sign1 sign/verify cost per batch vs encode+enqueue
//! scs-bench probes [--secs N] [--warmup-secs N] [--cameras N] [--nvrs N] [--interval-secs N] [--rtsp fake|gst|auto]
//!                                                 agent monitoring a simulated site vs an agent with no devices
//! scs-bench flash [--interval-secs N] [--site-batches N] [--worst-batches N]
//!                                                 agent bytes written vs payload queued (/proc/PID/io)
//! ```
//! Each prints human lines and one machine line `BENCH <name> key=value ...` that scripts/bench collects.
//! The real binaries come from the same target dir as this program (build them with the same profile).

mod drain;
mod flash;
mod opts;
mod outbox;
mod probes;
mod raw_insert;
mod rss;
mod sign;
mod site;
mod size;

use std::process::ExitCode;

use crate::opts::Opts;

const USAGE: &str = "usage: scs-bench size | raw-insert [--n N] [--dir DIR] | drain [--batches N] [--devices N] \
                     [--broker embedded|mosquitto] | rss [--secs N] [--devices N] | sign [--n N] [--devices N] [--dir DIR] \
                     | probes [--secs N] [--warmup-secs N] [--cameras N] [--nvrs N] [--interval-secs N] [--rtsp fake|gst|auto] \
                     | flash [--interval-secs N] [--site-batches N] [--worst-batches N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let opts = match Opts::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scs-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "size" => size::run(&opts),
        "raw-insert" => raw_insert::run(&opts),
        "drain" => drain::run(&opts),
        "rss" => rss::run(&opts),
        "sign" => sign::run(&opts),
        "probes" => probes::run(&opts),
        "flash" => flash::run(&opts),
        _ => Err(format!("unknown subcommand {cmd:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scs-bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
