//! `argus` subcommands.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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
    /// Run the node agent, or check its configuration (the same as the
    /// `argus-agent` binary, which is what the DaemonSet image ships).
    Agent(AgentArgs),
}

/// `argus agent [run [--config FILE] | validate-config FILE]`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<argus_agent::cli::AgentCommand>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => crate::backtest::run(args),
        Command::Detector(cmd) => return argus_detector::cli::run_command(cmd),
        Command::Agent(args) => Ok(argus_agent::cli::run_command(
            args.command
                .unwrap_or(argus_agent::cli::AgentCommand::Run { config: None }),
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
