//! The command line of `apprelease-operator`; `main.rs` only calls it. It lives in the
//! library so that the demo can run the very same operator as a child process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::leader::{self, Elector, Lost, Timing};
use crate::shutdown::Shutdown;
use crate::{controller, crd, http, metrics::Metrics};
use anyhow::Context as _;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{info, warn};

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
    /// Of several replicas, only the holder of a Lease reconciles; the others stand by.
    /// `--leader-election=false` for a single replica that needs no Lease.
    #[arg(long, action = ArgAction::Set, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    leader_election: bool,
    /// Name of the Lease (coordination.k8s.io/v1). Installations that watch different
    /// namespaces of one cluster need different names.
    #[arg(long, default_value = "apprelease-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's own, from its ServiceAccount; outside a
    /// cluster apprelease-system).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease (default: hostname_pid).
    #[arg(long, env = "POD_NAME")]
    lease_identity: Option<String>,
}

/// How long the reconciles in flight and the queued webhook messages may take after SIGTERM;
/// with [`RELEASE_LIMIT`] within the shipped Deployment's terminationGracePeriodSeconds (30).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// How long giving the Lease up may take after the drain.
pub const RELEASE_LIMIT: Duration = Duration::from_secs(5);

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
    let identity = leader::identity(
        args.lease_identity,
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::process::id(),
    );
    // Names the operator, and which replica, in API server audit logs (and in the
    // simulator's request log): `apprelease-operator/0.1.0 (apprelease-operator-7d9-x2)`.
    config
        .headers
        .push((::http::header::USER_AGENT, user_agent(&identity)));
    let client = Client::try_from(config)?;
    let shutdown = Shutdown::on_signals()?;
    let replica = Replica {
        client: client.clone(),
        settings: controller::Settings {
            namespace: args.namespace,
            concurrency: args.concurrency,
            notify: Default::default(),
        },
        metrics: Arc::new(Metrics::default()),
        ready: Arc::new(AtomicBool::new(false)),
        standby: Arc::new(AtomicBool::new(false)),
        shutdown,
    };
    let health = http::Health {
        metrics: replica.metrics.clone(),
        ready: replica.ready.clone(),
        standby: replica.standby.clone(),
    };
    let server = tokio::spawn(http::serve(args.metrics_addr, health));
    let settings = &replica.settings;
    info!(namespace = ?settings.namespace, concurrency = settings.concurrency, "starting");
    if args.leader_election {
        let namespace = leader::lease_namespace(
            args.lease_namespace,
            std::fs::read_to_string(leader::SERVICE_ACCOUNT_NAMESPACE).ok(),
        );
        info!(
            lease = format!("{namespace}/{}", args.lease_name),
            identity, "leader election"
        );
        let mut elector = Elector::new(
            client,
            &namespace,
            &args.lease_name,
            &identity,
            Timing::default(),
        );
        replica.elect(&mut elector).await;
    } else {
        replica.metrics.leader.set(1);
        replica.lead().await;
    }
    server.abort();
    info!("stopped");
    Ok(())
}

/// The User-Agent header: the operator's version and this replica's identity (left out if it
/// cannot be a header value).
fn user_agent(identity: &str) -> ::http::HeaderValue {
    let agent = concat!("apprelease-operator/", env!("CARGO_PKG_VERSION"));
    ::http::HeaderValue::try_from(format!("{agent} ({identity})"))
        .unwrap_or_else(|_| ::http::HeaderValue::from_static(agent))
}

/// This process: what it needs to stand by and to lead.
struct Replica {
    client: Client,
    settings: controller::Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    standby: Arc<AtomicBool>,
    shutdown: Shutdown,
}

/// How a term as leader ended.
enum Term {
    /// Shutdown was asked for and the controller has drained.
    Drained,
    /// The Lease was lost; the controller has been stopped.
    Lost(Lost),
}

impl Replica {
    /// Stands by until this replica holds the Lease, then leads until the Lease is lost (and
    /// stands by again) or a shutdown is asked for: then the controller drains, the Lease is
    /// released so that a standby takes over at once, and this returns. Only the leader runs
    /// the controller, so only one process writes AppRelease statuses and creates Jobs.
    async fn elect(&self, elector: &mut Elector) {
        loop {
            let standby = self.standby.clone();
            let acquired = tokio::select! {
                sent = elector.acquire(|_| standby.store(true, Ordering::Relaxed)) => sent,
                // Nothing to drain; the release below only matters if a take was under way.
                () = self.shutdown.requested() => break,
            };
            self.standby.store(false, Ordering::Relaxed);
            self.metrics.leader.set(1);
            let term = tokio::select! {
                () = self.lead() => Term::Drained,
                // Dropping `lead` stops the reconciles in flight at their next await: nothing
                // is written after the renew deadline, before anyone else may take over.
                lost = elector.hold(acquired) => Term::Lost(lost),
            };
            self.metrics.leader.set(0);
            self.ready.store(false, Ordering::Relaxed);
            match term {
                Term::Drained => break,
                Term::Lost(lost) => {
                    warn!(%lost, "lost the Lease: stopped reconciling, standing by");
                }
            }
        }
        // Only if this replica holds it (`release` reads it first).
        match tokio::time::timeout(RELEASE_LIMIT, elector.release()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => warn!(%error, "releasing the Lease; it expires by itself"),
            Err(_) => {
                warn!(limit = ?RELEASE_LIMIT, "releasing the Lease timed out; it expires by itself")
            }
        }
    }

    /// Runs the controller until a shutdown is asked for and the reconciles in flight have
    /// finished: at most [`DRAIN_LIMIT`], and a second signal ends it at once.
    async fn lead(&self) {
        // The cache of a new term is empty until its first list.
        self.ready.store(false, Ordering::Relaxed);
        let ready = self.ready.clone();
        let controller = controller::run(
            self.client.clone(),
            self.settings.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
            move || ready.store(true, Ordering::Relaxed),
        );
        let limit = async {
            self.shutdown.requested().await;
            // kube-runtime's runner starts no reconcile before the cache is filled, and does
            // not end until it is (controller/runner.rs: `delay_tasks_until` the store is
            // ready), so without a cache nothing is in flight and nothing would end the drain.
            if !self.ready.load(Ordering::Relaxed) {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(DRAIN_LIMIT) => {
                    warn!(limit = ?DRAIN_LIMIT, "reconciles still running at the drain limit: stopping them");
                }
                () = self.shutdown.forced() => {}
            }
        };
        tokio::select! {
            () = controller => {}
            () = limit => {}
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let all = ["apprelease-operator", "run"].iter().chain(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Run(args) => args,
            Command::Crd => panic!("not run"),
        }
    }

    #[test]
    fn the_user_agent_names_the_replica() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            user_agent("apprelease-operator-7d9-x2"),
            format!("apprelease-operator/{version} (apprelease-operator-7d9-x2)")
        );
        assert_eq!(
            user_agent("bad\nname"),
            format!("apprelease-operator/{version}")
        );
    }

    #[test]
    fn leader_election_is_on_unless_turned_off() {
        let default = run_args(&[]);
        assert!(default.leader_election);
        assert_eq!(default.lease_name, "apprelease-operator");
        assert_eq!(default.lease_namespace, None);
        assert!(run_args(&["--leader-election"]).leader_election);
        assert!(!run_args(&["--leader-election=false"]).leader_election);
        assert!(!run_args(&["--leader-election", "false"]).leader_election);
        let named = run_args(&["--lease-name", "shop", "--lease-namespace", "ops"]);
        assert_eq!(
            (named.lease_name.as_str(), named.lease_namespace.as_deref()),
            ("shop", Some("ops"))
        );
    }
}
