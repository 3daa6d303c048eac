//! argus: the command-line tool around the agent and the detector.
//!
//! - [`cli`]: argument parsing and dispatch (`argus backtest`, …).
//! - [`backtest`]: runs the detection engine over labelled or unlabelled
//!   history (CSV/Parquet via polars), scores it the NAB way, plots it.

pub mod backtest;
pub mod cli;
