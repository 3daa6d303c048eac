//! `argus` subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "argus",
    version,
    about = "Argus: anomaly detection for payment-grade services"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score the detection engine on history: a NAB corpus or CSV/Parquet files.
    Backtest(crate::backtest::BacktestArgs),
    /// The detector service: `run`, `validate-config`, `print-default-config`
    /// (the same commands as the `argus-detector` binary).
    #[command(subcommand)]
    Detector(argus_detector::cli::DetectorCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => crate::backtest::run(args),
        Command::Detector(cmd) => return argus_detector::cli::run_command(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
