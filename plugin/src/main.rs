//! `kubectl apprelease`: a kubectl plugin that reads and drives AppReleases through the API
//! alone — status, history, the backup inventory, on-demand backups and restores, retries and
//! approvals. Decisions and formatting are pure functions (each module's tests); `cli` does
//! the I/O.

mod annotate;
mod backups;
mod cli;
mod cluster;
mod format;
mod history;
mod requests;
mod status;
#[cfg(test)]
mod testdata;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain, outermost first, as kubectl prints `error: …`.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
