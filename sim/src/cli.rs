//! Command line: `apprelease-sim serve --port P --kubeconfig FILE [--time-scale N] [--fault JSON]`.

use std::path::PathBuf;

use anyhow::Context;
use apprelease_sim::{Fault, Sim, SimConfig};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apprelease-sim",
    version,
    about = "A simulated Kubernetes cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the simulated API until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the kubeconfig names the real one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write a kubeconfig for kubectl and the operator.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Simulated seconds a Job pod runs when no rule matches it.
    #[arg(long, default_value_t = 2.0)]
    job_seconds: f64,
    /// Simulated seconds a Deployment pod takes to become ready.
    #[arg(long, default_value_t = 2.0)]
    pod_ready_seconds: f64,
    /// A fault as JSON, e.g. '{"kind":"image","image":"*:broken","effect":"neverReady"}'
    /// (repeatable; the same format `POST /sim/faults` takes).
    #[arg(long = "fault", value_parser = parse_fault)]
    faults: Vec<Fault>,
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    serde_json::from_str(s).map_err(|e| format!("invalid fault {s:?}: {e}"))
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.time_scale > 0.0 && args.time_scale.is_finite(),
        "--time-scale must be a positive number, got {}",
        args.time_scale
    );
    let sim = Sim::start(SimConfig {
        port: args.port,
        time_scale: args.time_scale,
        faults: args.faults,
        default_job_run: seconds(args.job_seconds)?,
        pod_ready_after: seconds(args.pod_ready_seconds)?,
    })
    .await
    .context("binding the simulated API server")?;
    if let Some(path) = &args.kubeconfig {
        sim.write_kubeconfig(path)
            .with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }
    // Scripts wait for this line to know the server is up.
    println!("apprelease-sim listening on {}", sim.url());
    wait_for_signal().await?;
    sim.shutdown().await;
    Ok(())
}

fn seconds(value: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .with_context(|| format!("{value} is not a number of seconds"))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
