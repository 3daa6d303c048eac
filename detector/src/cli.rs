//! The commands of `argus-detector`, also reachable as `argus detector …`.
//!
//! - `run [--config FILE]`: load (file or embedded defaults, then the
//!   `ARGUS_DETECTOR__…` overrides), start, and run until SIGTERM/SIGINT;
//!   then the graceful shutdown of [`crate::service`].
//! - `validate-config FILE`: load exactly as `run` would and print every
//!   problem, one per line with its field path; exit 1 if any.
//! - `print-default-config`: the embedded defaults as YAML.
//!
//! Exit codes: 0 fine, 1 invalid configuration or failed run, 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use argus_common::shutdown::{Shutdown, os_signal};
use clap::{Args, Parser, Subcommand};

use crate::config::DetectorConfig;

#[derive(Parser, Debug)]
#[command(
    name = "argus-detector",
    version,
    about = "Argus detector: OTLP in, anomalies out (Alertmanager alerts, signed webhooks, /metrics)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: DetectorCommand,
}

#[derive(Subcommand, Debug)]
pub enum DetectorCommand {
    /// Run the detector until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Check a configuration file (with the ARGUS_DETECTOR__… overrides of
    /// this environment) and print every problem.
    ValidateConfig {
        /// The YAML file.
        file: PathBuf,
    },
    /// Print the embedded default configuration as YAML.
    PrintDefaultConfig,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// YAML configuration; without it the embedded defaults are used.
    #[arg(long, short, env = "ARGUS_DETECTOR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `argus-detector`'s `main`.
pub fn main() -> ExitCode {
    run_command(Cli::parse().command)
}

/// Runs one command.
pub fn run_command(cmd: DetectorCommand) -> ExitCode {
    match cmd {
        DetectorCommand::ValidateConfig { file } => match DetectorConfig::load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!(
                    "{}: {} problem{}",
                    file.display(),
                    e.0.len(),
                    if e.0.len() == 1 { "" } else { "s" }
                );
                for p in &e.0 {
                    // One problem, one line (regex errors span several).
                    let flat: Vec<&str> = p.split_whitespace().collect();
                    println!("  {}", flat.join(" "));
                }
                ExitCode::from(1)
            }
        },
        DetectorCommand::PrintDefaultConfig => {
            print!("{}", DetectorConfig::default_yaml());
            ExitCode::SUCCESS
        }
        DetectorCommand::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let cfg = match DetectorConfig::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("argus-detector: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = cfg.logging.init() {
        eprintln!("argus-detector: {e}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("argus-detector: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        let shutdown = Shutdown::new();
        let running = crate::service::start(cfg, shutdown.clone()).await?;
        let signal = shutdown.clone();
        tokio::spawn(async move {
            os_signal().await;
            tracing::info!("signal received: shutting down");
            signal.trigger();
        });
        running.wait().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "argus-detector failed");
            eprintln!("argus-detector: {e}");
            ExitCode::from(1)
        }
    }
}
