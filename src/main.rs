//! The `shoal` binary: parse the command line, load the configuration, set up logging and
//! hand over to `shoal::app`. Exits 64 on a bad configuration.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shoal::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Pull-through cache for the Ollama and OCI registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cache.
    Serve(ServeArgs),
}

/// Only the SHOAL_* variables, and only those that are valid UTF-8 (`std::env::vars`
/// would panic on any other variable that is not).
fn shoal_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(shoal::config::ENV_PREFIX))
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let cfg = match Config::load(&args, shoal_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal: bad configuration: {}", shoal::telemetry::chain(&e));
            return ExitCode::from(64);
        }
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    shoal::telemetry::init(&cfg.log);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(shoal::app::run(cfg, shutdown_signal()))
                .context("shoal failed")
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops shoal");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
