//! The command line and the API calls: read, hand to the pure modules, print.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use apprelease_operator::api::{
    APPROVE_ANNOTATION, AppRelease, AppReleaseBackup, AppReleaseRestore, RETRY_ANNOTATION,
    RequestStatus, TargetKind, duration,
};
use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::{self, About, Cluster};
use crate::status::{EventView, StatusView, TargetView};
use crate::{annotate, backups, history, requests};

const RELEASES: &str = "appreleases.apprelease.io";
const BACKUPS: &str = "appreleasebackup.apprelease.io";
const RESTORES: &str = "appreleaserestore.apprelease.io";
/// The field manager of every write, so that managedFields say who made it.
const FIELD_MANAGER: &str = "kubectl-apprelease";

/// Reads and drives AppReleases: what runs and what is in flight, the upgrade history, the
/// backup inventory; on-demand backups and restores; retries and approvals.
#[derive(Parser)]
#[command(name = "kubectl-apprelease", bin_name = "kubectl apprelease", version)]
struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (default: the context's, else `default`).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Versions, what each target runs, the step in flight, conditions and recent Events.
    Status {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Finished upgrades and on-demand requests, newest first.
    History {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The backup inventory, and why retention keeps each backup.
    Backups {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Ask for a backup now (creates an AppReleaseBackup).
    Backup {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Restore a backup of the inventory (creates an AppReleaseRestore), after confirmation.
    Restore {
        name: String,
        /// The backup's id, as `backups` lists it.
        #[arg(long, value_name = "ID")]
        backup: String,
        /// A component of a backup set to restore (repeat for more; default: all).
        #[arg(long = "component", value_name = "C")]
        components: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Try a failed version again (sets a new apprelease.io/retry).
    Retry { name: String },
    /// Approve the upgrade to VERSION of a release with `approval: Manual`.
    Approve { name: String, version: String },
}

#[derive(clap::Args)]
struct WaitArgs {
    /// Wait until the request has succeeded or failed (exit 1 when it failed).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 30m, 1h30m.
    #[arg(long, default_value = "30m", value_parser = duration::parse)]
    timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Parses `args` (the program name first) and runs the command.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    tokio::runtime::Builder::new_current_thread()
        // Pod templates in AppRelease specs deserialize through deep serde stacks.
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cluster = cluster::connect(
        cli.kubeconfig.as_deref(),
        cli.context.as_deref(),
        cli.namespace.as_deref(),
    )
    .await?;
    let cx = &cluster;
    let now = chrono::Utc::now();
    match cli.command {
        Command::Status { name, output } => {
            let release = get_release(cx, &name).await?;
            let view = StatusView::new(
                &release,
                targets(cx, &release).await?,
                events(cx, &name).await?,
            );
            print(output, &view, || view.render(now))
        }
        Command::History { name, output } => {
            let release = get_release(cx, &name).await?;
            let history = release.status.unwrap_or_default().history;
            print(output, &history, || history::render(&history))
        }
        Command::Backups { name, output } => {
            let release = get_release(cx, &name).await?;
            let restores = restores(cx).await?;
            let pending = backups::pending_restores(&restores, &name);
            let views = backups::views(&release, &pending, now);
            print(output, &views, || backups::render(&views, now))
        }
        Command::Backup { name, wait, output } => {
            let release = get_release(cx, &name).await?;
            requests::check_backup(&release).map_err(anyhow::Error::msg)?;
            let created = create(cx, requests::backup_request(&name), BACKUPS).await?;
            finish(cx, created, BACKUPS, &wait, output).await
        }
        Command::Restore {
            name,
            backup,
            components,
            yes,
            wait,
            output,
        } => {
            let release = get_release(cx, &name).await?;
            let plan = requests::plan_restore(&release, &backup, &components)
                .map_err(anyhow::Error::msg)?;
            let text = requests::describe_restore(&release, &plan, now);
            // -o json keeps stdout for the object.
            let mut say: Box<dyn Write> = match output {
                Output::Table => Box::new(std::io::stdout()),
                Output::Json => Box::new(std::io::stderr()),
            };
            write!(say, "{text}")?;
            match requests::confirmation(yes, std::io::stdin().is_terminal()) {
                requests::Confirm::Given => {}
                requests::Confirm::Refuse => anyhow::bail!(requests::NO_TERMINAL),
                requests::Confirm::Ask => {
                    write!(say, "{}", requests::QUESTION)?;
                    say.flush()?;
                    let mut answer = String::new();
                    std::io::stdin().lock().read_line(&mut answer)?;
                    if !requests::accepted(&answer) {
                        anyhow::bail!("not restored: the answer was not yes; nothing was created");
                    }
                }
            }
            let created = create(cx, requests::restore_request(&name, &plan), RESTORES).await?;
            finish(cx, created, RESTORES, &wait, output).await
        }
        Command::Retry { name } => {
            let (value, patch) = annotate::retry_patch(now);
            let patched = patch_release(cx, &name, &patch).await?;
            println!("{}", annotate::annotated(&name, RETRY_ANNOTATION, &value));
            if let Some(note) = annotate::retry_note(&patched) {
                eprintln!("{note}");
            }
            Ok(())
        }
        Command::Approve { name, version } => {
            let release = get_release(cx, &name).await?;
            annotate::check_approve(&release, &version).map_err(anyhow::Error::msg)?;
            patch_release(cx, &name, &annotate::patch(APPROVE_ANNOTATION, &version)).await?;
            println!(
                "{}",
                annotate::annotated(&name, APPROVE_ANNOTATION, &version)
            );
            Ok(())
        }
    }
}

fn print<T: Serialize>(
    output: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => print!("{}", table()),
    }
    Ok(())
}

async fn get_release(cx: &Cluster, name: &str) -> anyhow::Result<AppRelease> {
    Api::<AppRelease>::namespaced(cx.client.clone(), &cx.namespace)
        .get(name)
        .await
        .map_err(|e| {
            cx.error(
                e,
                About {
                    resource: RELEASES,
                    name: Some(name),
                },
            )
        })
}

async fn patch_release(
    cx: &Cluster,
    name: &str,
    patch: &serde_json::Value,
) -> anyhow::Result<AppRelease> {
    Api::<AppRelease>::namespaced(cx.client.clone(), &cx.namespace)
        .patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| {
            cx.error(
                e,
                About {
                    resource: RELEASES,
                    name: Some(name),
                },
            )
        })
}

/// The AppReleaseRestores of the namespace.
async fn restores(cx: &Cluster) -> anyhow::Result<Vec<AppReleaseRestore>> {
    let resource = "appreleaserestores.apprelease.io";
    Ok(
        Api::<AppReleaseRestore>::namespaced(cx.client.clone(), &cx.namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                cx.error(
                    e,
                    About {
                        resource,
                        name: None,
                    },
                )
            })?
            .items,
    )
}

/// Each target's workload as it runs now, in spec order.
async fn targets(cx: &Cluster, release: &AppRelease) -> anyhow::Result<Vec<TargetView>> {
    let deployments: Api<Deployment> = Api::namespaced(cx.client.clone(), &cx.namespace);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(cx.client.clone(), &cx.namespace);
    let mut views = Vec::new();
    for target in &release.spec.targets {
        let (kind, name) = (target.kind(), target.name());
        let view = match kind {
            TargetKind::Deployment => deployments
                .get_opt(name)
                .await
                .map(|d| d.as_ref().map(TargetView::deployment))
                .map_err(|e| {
                    cx.error(
                        e,
                        About {
                            resource: "deployments.apps",
                            name: Some(name),
                        },
                    )
                })?,
            TargetKind::StatefulSet => stateful_sets
                .get_opt(name)
                .await
                .map(|s| s.as_ref().map(TargetView::stateful_set))
                .map_err(|e| {
                    cx.error(
                        e,
                        About {
                            resource: "statefulsets.apps",
                            name: Some(name),
                        },
                    )
                })?,
        };
        views.push(view.unwrap_or_else(|| TargetView::missing(kind, name)));
    }
    Ok(views)
}

/// The Events about the AppRelease `name`, as `kubectl describe` finds them.
async fn events(cx: &Cluster, name: &str) -> anyhow::Result<Vec<EventView>> {
    let selector = format!("involvedObject.kind=AppRelease,involvedObject.name={name}");
    let list = Api::<Event>::namespaced(cx.client.clone(), &cx.namespace)
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(|e| {
            cx.error(
                e,
                About {
                    resource: "events",
                    name: None,
                },
            )
        })?;
    Ok(list.items.iter().map(EventView::from_event).collect())
}

async fn create<K: Request>(cx: &Cluster, object: K, resource: &str) -> anyhow::Result<K> {
    Api::<K>::namespaced(cx.client.clone(), &cx.namespace)
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &object,
        )
        .await
        .map_err(|e| {
            cx.error(
                e,
                About {
                    resource,
                    name: None,
                },
            )
        })
}

/// An on-demand request as both kinds are handled here.
trait Request:
    kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
    fn request_status(&self) -> Option<&RequestStatus>;
}

impl Request for AppReleaseBackup {
    fn request_status(&self) -> Option<&RequestStatus> {
        self.status.as_ref()
    }
}

impl Request for AppReleaseRestore {
    fn request_status(&self) -> Option<&RequestStatus> {
        self.status.as_ref()
    }
}

/// The object as `kubectl get -o json` prints it: without managedFields.
fn to_json<K: Request>(mut object: K) -> anyhow::Result<String> {
    object.meta_mut().managed_fields = None;
    Ok(serde_json::to_string_pretty(&object)?)
}

/// How often --wait looks: a request takes at least a Job's run, so a poll every two seconds
/// is prompt enough and needs no watch permission.
const POLL: Duration = Duration::from_secs(2);

/// Prints the created request; with --wait, waits for its end and prints that.
async fn finish<K: Request>(
    cx: &Cluster,
    created: K,
    resource: &str,
    wait: &WaitArgs,
    output: Output,
) -> anyhow::Result<()> {
    let name = created.meta().name.clone().unwrap_or_default();
    let line = format!("{resource}/{name} created");
    match output {
        Output::Table => println!("{line}"),
        // The object goes once, as it ends with --wait.
        Output::Json if !wait.wait => println!("{}", to_json(created)?),
        Output::Json => eprintln!("{line}"),
    }
    if !wait.wait {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(cx.client.clone(), &cx.namespace);
    let deadline = Instant::now() + wait.timeout;
    loop {
        let current = api.get(&name).await.map_err(|e| {
            cx.error(
                e,
                About {
                    resource,
                    name: Some(&name),
                },
            )
        })?;
        if let Some(end) = requests::outcome(resource, &name, current.request_status()) {
            if output == Output::Json {
                println!("{}", to_json(current)?);
            }
            return match end {
                Ok(line) => {
                    match output {
                        Output::Table => println!("{line}"),
                        Output::Json => eprintln!("{line}"),
                    }
                    Ok(())
                }
                Err(line) => Err(anyhow::anyhow!(line)),
            };
        }
        if Instant::now() >= deadline {
            let phase = current
                .request_status()
                .and_then(|s| s.phase)
                .map_or("not started".into(), |p| format!("{p:?}"));
            anyhow::bail!(
                "{resource}/{name} did not finish within {} (phase: {phase}); it goes on in the \
                 cluster: `kubectl get {resource} {name} -n {}` shows where it is",
                crate::format::duration(
                    chrono::TimeDelta::from_std(wait.timeout).unwrap_or_default()
                ),
                cx.namespace
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
