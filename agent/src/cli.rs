//! The command line of `argus-agent` (and of `argus agent …`, which
//! delegates here).
//!
//! ```text
//! argus-agent                          run on the embedded defaults
//! argus-agent run [--config FILE]      run (FILE also from ARGUS_AGENT_CONFIG)
//! argus-agent validate-config FILE     report every problem in FILE, exit 0/1
//! argus-agent --version
//! ```
//!
//! Exit codes: 0 after a clean stop (SIGTERM/SIGINT) or a valid config; 1
//! for an invalid config or a failure while running; 2 for bad arguments
//! (clap's).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argus_common::shutdown::{Shutdown, os_signal};
use clap::{Parser, Subcommand};

use crate::config::AgentConfig;

#[derive(Parser, Debug)]
#[command(
    name = "argus-agent",
    version,
    about = "Argus node agent: logs, host metrics and OTLP, shipped losslessly over OTLP"
)]
pub struct AgentCli {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

/// What `argus-agent` (or `argus agent`) does.
#[derive(Subcommand, Debug, Clone)]
pub enum AgentCommand {
    /// Run the agent (the default when no subcommand is given).
    Run {
        /// YAML configuration; without it, the embedded defaults.
        /// `ARGUS_AGENT__SECTION__FIELD` variables override either.
        #[arg(long, short, env = "ARGUS_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (with the environment overrides in force)
    /// and list every problem; exit status 0 when valid, 1 otherwise.
    ValidateConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
}

/// `argus-agent`'s `main`.
pub fn main() -> ExitCode {
    let cli = AgentCli::parse();
    run_command(cli.command.unwrap_or(AgentCommand::Run { config: None }))
}

/// Runs one command to completion.
pub fn run_command(command: AgentCommand) -> ExitCode {
    match command {
        AgentCommand::ValidateConfig { file } => validate(&file),
        AgentCommand::Run { config } => run(config.as_deref()),
    }
}

fn validate(file: &Path) -> ExitCode {
    let problems = match AgentConfig::load(Some(file)) {
        Ok(cfg) => dry_build(&cfg),
        Err(e) => e.problems,
    };
    if problems.is_empty() {
        println!("{}: valid", file.display());
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: {} problem{}:",
            file.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in &problems {
            eprintln!("  {p}");
        }
        ExitCode::from(1)
    }
}

/// What only building can tell (an unreadable certificate or token file, a
/// host root without `proc`), without opening the queue or binding ports.
fn dry_build(cfg: &AgentConfig) -> Vec<String> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![format!("cannot start a runtime for the checks: {e}")],
    };
    let _guard = rt.enter();
    let mut registry = prometheus_client::registry::Registry::default();
    let mut problems = Vec::new();
    if let Err(e) = cfg.exporter.build(&mut registry) {
        problems.extend(e.problems);
    }
    if let Some(h) = &cfg.host
        && let Err(e) = h.build("host", &mut registry)
    {
        problems.extend(e.0);
    }
    if let Some(r) = &cfg.receiver {
        struct Nothing;
        impl argus_common::otlp::OtlpConsumer for Nothing {
            async fn consume(
                &self,
                _: argus_common::otlp::Payload,
                _: argus_common::otlp::RequestContext,
            ) -> Result<argus_common::otlp::Accepted, argus_common::otlp::ConsumeError>
            {
                Ok(argus_common::otlp::Accepted::all())
            }
        }
        if let Err(argus_common::otlp::ReceiverError::Config(p)) =
            r.build_at("receiver", Nothing, &mut registry)
        {
            problems.extend(p);
        }
    }
    problems
}

fn run(config: Option<&Path>) -> ExitCode {
    let cfg = match AgentConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("argus-agent: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = cfg.logging.init() {
        eprintln!("argus-agent: {e}");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("argus-agent")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let shutdown = Shutdown::new();
        let agent = crate::agent::start(&cfg, shutdown.clone()).await?;
        let signal = shutdown.clone();
        tokio::spawn(async move {
            os_signal().await;
            tracing::info!("signal received");
            signal.trigger();
        });
        agent.wait().await
    });
    // Blocking threads (queue I/O) finish their current call; nothing
    // waits on them any more.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "argus-agent failed");
            ExitCode::from(1)
        }
    }
}
