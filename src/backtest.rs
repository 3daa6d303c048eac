//! `argus backtest`: runs the detection engine over history and scores it.
//!
//! - [`nab`]: the NAB 1.1 scorer (pure, row-indexed).

pub mod nab;

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct BacktestArgs {}

pub fn run(_args: BacktestArgs) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
