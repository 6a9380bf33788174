//! The command line of `apprelease-operator`; `main.rs` only calls it. It lives in the
//! library so that the demo can run the very same operator as a child process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{controller, crd, http, metrics::Metrics};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Upgrades self-hosted applications declared by AppRelease resources: backup, migrate,
/// roll out, verify, and roll back when something fails.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile AppReleases in the cluster of the kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// Print the AppRelease CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Parser)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "APPRELEASE_NAMESPACE")]
    namespace: Option<String>,
    /// How many AppReleases are reconciled at the same time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Parses `args` (the program name first) and runs the command.
pub fn main<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::parse_from(args).command {
        Command::Crd => {
            print!("{}", crd::yaml());
            Ok(())
        }
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            // Deserializing pod templates (k8s-openapi's PodSpec) through serde's buffered
            // content takes deep stacks; 2 MiB worker threads overflow in debug builds.
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()?
            .block_on(run(args)),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let mut config = config;
    // Names the operator in API server audit logs (and in the simulator's request log).
    let agent = concat!("apprelease-operator/", env!("CARGO_PKG_VERSION"));
    config.headers.push((
        ::http::header::USER_AGENT,
        ::http::HeaderValue::from_static(agent),
    ));
    let client = Client::try_from(config)?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let health = http::Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(http::serve(args.metrics_addr, health));
    let settings = controller::Settings {
        namespace: args.namespace,
        concurrency: args.concurrency,
        notify: Default::default(),
    };
    tracing::info!(namespace = ?settings.namespace, concurrency = settings.concurrency, "starting");
    controller::run(client, settings, metrics, move || {
        ready.store(true, Ordering::Relaxed)
    })
    .await;
    server.abort();
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
