//! argus: the command-line tool around the agent and the detector.
//!
//! - [`cli`]: argument parsing and dispatch (`argus backtest`, …).
//! - [`backtest`]: runs the detection engine over labelled or unlabelled
//!   history (CSV/Parquet via polars), scores it the NAB way, plots it.
//! - [`demo`]: `argus demo` — detector, agent and a payments workload in one
//!   process; an injected incident is detected, paged, healed and resolved.

pub mod backtest;
pub mod cli;
pub mod demo;
