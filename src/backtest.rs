//! (planned)

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct BacktestArgs {}

pub fn run(_args: BacktestArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
