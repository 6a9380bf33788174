//! `apprelease-demo`: starts a simulated cluster and the real operator, installs the example
//! app, then shows a successful upgrade and a failed one that rolls back by itself.

mod cluster;
mod show;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Shows the AppRelease operator upgrading an app, and rolling back a broken version, on a
/// simulated Kubernetes cluster. No cluster needed.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Simulated seconds per real second (Job run times, rollouts, progress deadlines).
    #[arg(long, default_value_t = 30.0)]
    time_scale: f64,
    /// Port of the simulated API server (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig of the simulation (default: a temporary directory).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Stop at the end instead of keeping the simulation up for kubectl.
    #[arg(long)]
    exit: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the operator itself (the demo starts itself this way as a separate process).
    #[command(hide = true)]
    Operator {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Operator { args }) = args.command {
        let program = std::iter::once("apprelease-operator".to_string()).chain(args);
        return apprelease_operator::cli::main(program);
    }
    tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// The versions of the story.
const V1: &str = "1.0.0";
const V2: &str = "1.1.0";
const BROKEN: &str = "1.2.0";

async fn run(args: Args) -> anyhow::Result<()> {
    show::title("Starting a simulated cluster and the AppRelease operator");
    let demo =
        cluster::Demo::start(args.port, args.time_scale, args.kubeconfig.clone(), BROKEN).await?;
    show::line(&format!("simulated API server   {}", demo.url()));
    show::line(&format!(
        "kubeconfig             {}",
        demo.kubeconfig.display()
    ));
    show::line(&format!(
        "operator log           {}",
        demo.operator_log.display()
    ));

    show::title(&format!(
        "Installing the example app (manifests/examples/meet.yaml) at {V1}"
    ));
    demo.install_example().await?;
    demo.follow(V1, |s| {
        s.current_version.as_deref() == Some(V1) && cluster::ready(s)
    })
    .await?;
    demo.table().await?;

    show::title(&format!(
        "Upgrading to {V2}: backup, migration, rollout, verification"
    ));
    demo.set_version(V2).await?;
    demo.follow(V2, |s| {
        s.current_version.as_deref() == Some(V2) && cluster::ready(s)
    })
    .await?;
    demo.table().await?;

    show::title(&format!(
        "Upgrading to {BROKEN}, whose image never becomes ready"
    ));
    show::line("(the simulation is scripted so that every pod of that version stays unready)");
    demo.set_version(BROKEN).await?;
    demo.follow(BROKEN, |s| s.upgrade.is_none() && s.history.len() >= 2)
        .await?;
    demo.table().await?;

    show::title("Summary");
    demo.summary().await?;
    show::title("Look around");
    show::line(&format!("export KUBECONFIG={}", demo.kubeconfig.display()));
    show::line("kubectl get appreleases -A -o wide");
    show::line("kubectl describe apprelease -n meet meet");
    show::line("kubectl get deployments,jobs -n meet");
    if args.exit {
        return Ok(());
    }
    show::line("");
    show::line("The simulation keeps running; press Ctrl-C to stop it.");
    tokio::signal::ctrl_c().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
