//! The `preflight` binary: parses the command line, turns Ctrl-C and SIGTERM into an
//! orderly teardown, prints the whole error chain, and maps outcomes to exit codes.

use clap::Parser;
use preflight::cli::{self, Cli, EXIT_ERROR};
use preflight::progress::Progress;

fn main() {
    let cli = Cli::parse();
    preflight::init_crypto();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    let code = runtime.block_on(async {
        let progress = Progress::from_env();
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot install the SIGTERM handler: {e}");
                    return EXIT_ERROR;
                }
            };
        // Dropping the command's future on a signal drops every guard it holds: child
        // processes are stopped and temporary files removed before we exit.
        tokio::select! {
            result = cli::execute(cli, progress) => match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    EXIT_ERROR
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: tearing down");
                EXIT_ERROR
            }
            _ = term.recv() => {
                eprintln!("terminated: tearing down");
                EXIT_ERROR
            }
        }
    });
    // A helm or go still running on a blocking thread (the command's future was
    // dropped, not the thread) is stopped before the process exits.
    preflight::child_groups::stop_all(std::time::Duration::from_secs(2));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    std::process::exit(code);
}
