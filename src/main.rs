//! The `ktm` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("workload") => {
            let comm = args
                .iter()
                .position(|a| a == "--comm")
                .and_then(|i| args.get(i + 1))
                .map_or("banyand-demo", String::as_str);
            ExitCode::from(ktm::workload::child_main(comm) as u8)
        }
        _ => {
            eprintln!("usage: ktm workload --comm NAME");
            ExitCode::from(2)
        }
    }
}
