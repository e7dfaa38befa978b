//! `certgate`, the operator's command line: checks a policy and explains what certgate does with
//! one request, by running the real `certgate.wasm` through the host harness as Envoy would, and
//! imports App Mesh resources into certgate policies and Envoy configs.
//!
//! Exit status: 0 on success (a valid policy; an explained request, allowed or denied), 1 when
//! certgate rejects the policy, 2 when the command itself cannot run (missing file, bad flag).

mod appmesh;
mod check;
mod explain;
mod wasm;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "certgate", version, about)]
struct Cli {
    /// certgate.wasm to run (default: $CERTGATE_WASM, else the workspace's release build).
    #[arg(long, global = true, value_name = "PATH")]
    wasm: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy through certgate's own `on_configure`; print each problem with its field path.
    Check {
        /// The certgate policy (JSON).
        config: PathBuf,
    },
    /// Run one request through certgate and show the decision, the headers the upstream
    /// receives (or the reply), the metric changes and the log lines.
    Explain(Box<explain::ExplainArgs>),
    /// Turn another mesh's resources into certgate policies and Envoy bootstrap templates.
    #[command(subcommand)]
    Import(appmesh::ImportCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("certgate: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` when certgate rejected the policy.
fn run(cli: &Cli) -> anyhow::Result<bool> {
    let wasm_path = || wasm::locate(cli.wasm.as_deref());
    match &cli.command {
        Command::Check { config } => check::run(&wasm_path()?, config),
        Command::Import(appmesh::ImportCommand::Appmesh(args)) => appmesh::run(args).map(|()| true),
        Command::Explain(args) => Ok(match explain::run(&wasm_path()?, args)? {
            Some(explanation) => {
                explanation.print(args.json);
                true
            }
            None => false,
        }),
    }
}
