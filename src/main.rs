//! The `ringest` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = ringest::cli::Cli::parse();
    match ringest::run::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringest: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
