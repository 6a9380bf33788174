//! The real control plane as a scenario backend (`APPRELEASE_E2E_BACKEND=control-plane`): one
//! [`ControlPlane`] and one KWOK per test process, shared by every scenario of that test
//! binary, each scenario in a namespace of its own.
//!
//! KWOK plays the kubelet for one fake Node with the Stages of `testbed/kwok/stages.yaml`:
//! Deployment pods become ready at once (but the never-ready tag, fixtures::BAD_VERSION), Job
//! pods end as their template's `e2e.apprelease.io/*` annotations say.
//!
//! The operator is installed as the README says (`kubectl apply -k manifests/`, the built
//! kubectl), its in-cluster Deployment scaled to zero, and the binary under test runs outside
//! with a kubeconfig holding a token of the `apprelease-operator` ServiceAccount (TokenRequest
//! API): the real server enforces the shipped ClusterRole on every request it makes. The
//! audit log shows them all; [`Testbed::requests`] reads it.
//!
//! The processes are started from a thread of their own that lives as long as the test
//! process (their death signal is tied to it), and are killed, their files removed, when
//! the process exits — the files are kept when a scenario failed or with
//! `APPRELEASE_TESTBED_KEEP`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apprelease_operator::api::AppRelease;
use apprelease_sim::requests::RequestRecord;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Config};

use crate::Cluster;
use crate::control_plane::{self, ControlPlane};

/// Where the shipped manifests install the operator.
pub const OPERATOR_NAMESPACE: &str = "apprelease-system";
/// The operator's ServiceAccount (manifests/rbac.yaml).
pub const OPERATOR_SERVICE_ACCOUNT: &str = "apprelease-operator";
/// The Role (and RoleBinding) of manifests/rbac.yaml for the replicas' Lease.
const LEASE_ROLE: &str = "apprelease-operator-leader-election";
/// The user the real server sees for the operator.
pub const OPERATOR_USER: &str = "system:serviceaccount:apprelease-system:apprelease-operator";
/// The ServiceAccount of an operator that watches one namespace with only the Role of
/// overlays/namespaced/ ([`Testbed::use_namespaced_rbac`]).
pub const NAMESPACED_SERVICE_ACCOUNT: &str = "apprelease-operator-namespaced";
/// The user the real server sees for it.
pub const NAMESPACED_USER: &str =
    "system:serviceaccount:apprelease-system:apprelease-operator-namespaced";
/// The fake Node KWOK runs the Pods on.
const NODE: &str = "kwok-node-0";
/// The Stages, as the fixtures' annotations expect them.
const STAGES: &str = include_str!("../../testbed/kwok/stages.yaml");

/// The shared control plane of this test process, with KWOK and the operator's RBAC.
pub struct Testbed {
    /// Scratch directory of the control plane.
    pub dir: PathBuf,
    /// The binaries (kubectl too).
    pub bin: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Kubeconfig of `admin` (group `system:masters`), for the scenarios' own checks.
    pub admin_kubeconfig: PathBuf,
    /// Kubeconfig with a token of the operator's ServiceAccount, for the operator process.
    pub operator_kubeconfig: PathBuf,
    /// The apiserver's audit log.
    pub audit_log: PathBuf,
    /// From asking for it to everything installed (binaries found, processes healthy, Node
    /// ready, manifests applied, token issued).
    pub start_time: Duration,
}

static SHARED: OnceLock<Result<Testbed, String>> = OnceLock::new();
static PLANE: Mutex<Option<ControlPlane>> = Mutex::new(None);
static FAILED: AtomicBool = AtomicBool::new(false);

/// The testbed of this process, started on first use. A failed start is reported to every
/// caller.
pub fn shared() -> anyhow::Result<&'static Testbed> {
    SHARED
        .get_or_init(|| start_on_own_thread().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("starting the testbed: {e}"))
}

/// Keeps the control plane's files (logs, audit log) at exit: a scenario failed.
pub fn keep_files() {
    FAILED.store(true, Ordering::SeqCst);
}

fn start_on_own_thread() -> anyhow::Result<Testbed> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("testbed".into())
        .spawn(move || {
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(start()));
            match started {
                Ok((plane, testbed)) => {
                    *PLANE.lock().unwrap_or_else(|e| e.into_inner()) = Some(plane);
                    // SAFETY: registers a plain `extern "C"` function without arguments.
                    unsafe { libc::atexit(stop_at_exit) };
                    let _ = tx.send(Ok(testbed));
                    // The processes die with this thread: it lives as long as the process.
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })?;
    rx.recv().context("the testbed thread died")?
}

extern "C" fn stop_at_exit() {
    if let Some(mut plane) = PLANE.lock().ok().and_then(|mut p| p.take()) {
        plane.keep = FAILED.load(Ordering::SeqCst);
        drop(plane);
    }
}

async fn start() -> anyhow::Result<(ControlPlane, Testbed)> {
    let t0 = Instant::now();
    let kwok = control_plane::kwok_binary()?;
    let mut plane = ControlPlane::start().await?;
    eprintln!(
        "testbed: control plane at {} in {:.1} s, files in {}",
        plane.server,
        plane.ready_time.as_secs_f64(),
        plane.dir.display()
    );
    let admin = plane.client().await?;

    let stages = plane.dir.join("kwok-stages.yaml");
    std::fs::write(&stages, STAGES)?;
    let kwok_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    plane.spawn_program(
        "kwok",
        &kwok,
        &[
            format!("--kubeconfig={}", plane.kubeconfig.display()),
            format!("--config={}", stages.display()),
            "--manage-all-nodes=false".into(),
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
            "--node-lease-duration-seconds=40".into(),
            // Not the service network (10.0.0.0/24, KWOK's default).
            "--cidr=10.244.0.0/16".into(),
            format!("--server-address=127.0.0.1:{kwok_port}"),
            "--node-port=0".into(),
        ],
    )?;
    let nodes: Api<Node> = Api::all(admin.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": NODE, "type": "kwok"},
        },
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    plane
        .wait_healthy("kwok", || async {
            let node = nodes.get(NODE).await?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            anyhow::ensure!(ready, "Node {NODE} is not Ready yet");
            Ok(())
        })
        .await?;

    // Installed as a user would, the in-cluster operator scaled away: the binary under test
    // is the only one.
    let kubectl = |args: &[&str]| -> anyhow::Result<String> {
        let output = std::process::Command::new(plane.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
            .args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .stdin(std::process::Stdio::null())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    kubectl(&["apply", "-k", "manifests/"])?;
    kubectl(&[
        "scale",
        "deployment/apprelease-operator",
        "--namespace",
        OPERATOR_NAMESPACE,
        "--replicas=0",
    ])?;

    let operator_kubeconfig = plane.dir.join("operator.kubeconfig");
    let token = service_account_token(&admin, OPERATOR_SERVICE_ACCOUNT).await?;
    write_token_kubeconfig(
        &operator_kubeconfig,
        &plane.server,
        &plane.ca_cert,
        "apprelease-operator",
        &token,
    )?;
    // The RBAC authorizer reads bindings from a cache: wait until it grants what the
    // ClusterRole says (and the CRD is served).
    let operator = kubeconfig_client(&operator_kubeconfig).await?;
    let releases: Api<AppRelease> = Api::all(operator);
    crate::wait::until(
        Duration::from_secs(60),
        "the operator's ServiceAccount may list AppReleases",
        || async { releases.list(&ListParams::default().limit(1)).await.is_ok() },
    )
    .await?;

    let testbed = Testbed {
        dir: plane.dir.clone(),
        bin: plane.bin.clone(),
        server: plane.server.clone(),
        admin_kubeconfig: plane.kubeconfig.clone(),
        operator_kubeconfig,
        audit_log: plane.audit_log.clone(),
        start_time: t0.elapsed(),
    };
    eprintln!(
        "testbed: KWOK, manifests and the operator's token ready after {:.1} s",
        testbed.start_time.as_secs_f64()
    );
    Ok((plane, testbed))
}

/// A token of the ServiceAccount `name` in the operator's namespace (TokenRequest API), valid
/// for a day.
pub async fn service_account_token(admin: &Client, name: &str) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {name}"))?;
    Ok(answer.status.context("TokenRequest without status")?.token)
}

/// Writes a kubeconfig that authenticates with a bearer token.
pub fn write_token_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: testbed\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: {user}@testbed\n  context:\n    cluster: testbed\n    user: {user}\n\
         current-context: {user}@testbed\n",
        ca.display(),
    );
    std::fs::write(path, text)?;
    Ok(())
}

async fn kubeconfig_client(path: &Path) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

impl Testbed {
    /// Makes `cluster`'s operator run as [`NAMESPACED_SERVICE_ACCOUNT`], which holds only the
    /// Role and RoleBinding that `kubectl kustomize overlays/namespaced/` renders, moved to the
    /// scenario's namespace: no permission anywhere else. [`crate::Operator::start`] passes
    /// `--namespace` as the overlay's Deployment does.
    pub async fn use_namespaced_rbac(&self, cluster: &mut Cluster) -> anyhow::Result<()> {
        let rendered = cluster
            .run_kubectl(&["kustomize", "overlays/namespaced"])
            .await?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered)?;
        let find = |kind: &str, name: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .cloned()
                .with_context(|| format!("no {kind} {name} in overlays/namespaced"))
        };
        let (mut role, mut binding) = (
            find("Role", OPERATOR_SERVICE_ACCOUNT)?,
            find("RoleBinding", OPERATOR_SERVICE_ACCOUNT)?,
        );
        // The Lease stays in the operator's own namespace, where the testbed installed the
        // base's Role for it: bound to this ServiceAccount too.
        let mut lease_binding = find("RoleBinding", LEASE_ROLE)?;
        let watched = role["metadata"]["namespace"].as_str().unwrap_or_default();
        let deployment = find("Deployment", OPERATOR_SERVICE_ACCOUNT)?;
        let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
        anyhow::ensure!(
            args.as_array()
                .is_some_and(|a| a.iter().any(|x| *x == format!("--namespace={watched}"))),
            "the overlay's operator watches the namespace of its Role ({watched}): {args}"
        );
        let namespace = cluster.namespace.clone();
        let meta = serde_json::json!({"name": NAMESPACED_SERVICE_ACCOUNT, "namespace": namespace});
        role["metadata"] = meta.clone();
        binding["metadata"] = meta;
        binding["roleRef"]["name"] = NAMESPACED_SERVICE_ACCOUNT.into();
        let subjects = serde_json::json!([{
            "kind": "ServiceAccount",
            "name": NAMESPACED_SERVICE_ACCOUNT,
            "namespace": OPERATOR_NAMESPACE,
        }]);
        binding["subjects"] = subjects.clone();
        lease_binding["metadata"] = serde_json::json!({
            "name": format!("{NAMESPACED_SERVICE_ACCOUNT}-leader-election"),
            "namespace": OPERATOR_NAMESPACE,
        });
        lease_binding["subjects"] = subjects;
        let admin = cluster.client.clone();
        let account: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NAMESPACED_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
        }))?;
        Api::<ServiceAccount>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
            .create(&PostParams::default(), &account)
            .await?;
        Api::<Role>::namespaced(admin.clone(), &namespace)
            .create(&PostParams::default(), &serde_json::from_value(role)?)
            .await?;
        Api::<RoleBinding>::namespaced(admin.clone(), &namespace)
            .create(&PostParams::default(), &serde_json::from_value(binding)?)
            .await?;
        Api::<RoleBinding>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
            .create(
                &PostParams::default(),
                &serde_json::from_value(lease_binding)?,
            )
            .await?;
        let token = service_account_token(&admin, NAMESPACED_SERVICE_ACCOUNT).await?;
        let kubeconfig = cluster.dir.join("namespaced-operator.kubeconfig");
        write_token_kubeconfig(
            &kubeconfig,
            &self.server,
            &self.dir.join("ca.crt"),
            NAMESPACED_SERVICE_ACCOUNT,
            &token,
        )?;
        // As at start: the authorizer's cache grants the new binding after a moment.
        let releases: Api<AppRelease> =
            Api::namespaced(kubeconfig_client(&kubeconfig).await?, &namespace);
        crate::wait::until(
            Duration::from_secs(60),
            "the namespaced ServiceAccount may list AppReleases in its namespace",
            || async { releases.list(&ListParams::default().limit(1)).await.is_ok() },
        )
        .await?;
        cluster.operator_kubeconfig = kubeconfig;
        Ok(())
    }

    /// Every request of `user` the audit log recorded, anywhere, in the order answered.
    pub fn requests_of(&self, user: &str) -> Vec<RequestRecord> {
        let needle = format!("\"username\":\"{user}\"");
        audit_requests(
            &self.audit_log,
            |line| line.contains(&needle),
            |event| event["user"]["username"].as_str() == Some(user),
        )
    }

    /// The requests in `namespace` as the audit log recorded them, in the order they were
    /// answered, in the shape of the simulator's request log (a watch counts once, when it
    /// started).
    pub fn requests(&self, namespace: &str) -> Vec<RequestRecord> {
        // Parsing every line of a shared log of tens of megabytes is slow in a debug build:
        // skip the lines that cannot be about this namespace first.
        let needle = format!("\"namespace\":\"{namespace}\"");
        audit_requests(
            &self.audit_log,
            |line| line.contains(&needle),
            |event| event["objectRef"]["namespace"].as_str() == Some(namespace),
        )
    }

    /// The requests of `user` (in `namespace`, or anywhere) that the server refused with 403:
    /// `(verb, group/resource, namespace, name)`.
    pub fn forbidden(
        &self,
        user: &str,
        namespace: Option<&str>,
    ) -> Vec<(String, String, String, String)> {
        audit_requests(
            &self.audit_log,
            |line| line.contains("\"code\":403"),
            |event| {
                event["user"]["username"].as_str() == Some(user)
                    && namespace
                        .is_none_or(|ns| event["objectRef"]["namespace"].as_str() == Some(ns))
            },
        )
        .into_iter()
        .filter(|r| r.code == 403)
        .map(|r| {
            (
                r.verb,
                format!("{}/{}", r.group, r.resource),
                r.namespace,
                r.name,
            )
        })
        .collect()
    }
}

/// A write to a Deployment as the audit log recorded it with its body (only in the namespaces
/// of `control_plane::BODIES_AUDITED_IN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentWrite {
    /// The Deployment.
    pub name: String,
    /// `create`, `update` or `patch`.
    pub verb: String,
    /// Who (`apprelease-operator/…`, `kustomize-controller/…`, `kube-controller-manager/…`).
    pub user_agent: String,
    /// The field manager the request named (`?fieldManager=`), if any.
    pub field_manager: String,
    /// A server-side dry run (`?dryRun=All`): answered, never stored.
    pub dry_run: bool,
    /// The answer's code.
    pub code: u16,
    /// Container name → image of the Deployment the server answered with (for a dry run,
    /// what it would have stored).
    pub images: std::collections::BTreeMap<String, String>,
}

impl Testbed {
    /// Every write to a Deployment of `namespace` (one of `control_plane::BODIES_AUDITED_IN`),
    /// in the order answered.
    pub fn deployment_writes(&self, namespace: &str) -> Vec<DeploymentWrite> {
        assert!(
            control_plane::BODIES_AUDITED_IN.contains(&namespace),
            "the audit log keeps no Deployment bodies in {namespace}"
        );
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        let needle = format!("\"namespace\":\"{namespace}\"");
        text.lines()
            .filter(|line| line.contains(&needle) && line.contains("\"deployments\""))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| {
                e["stage"] == "ResponseComplete"
                    && e["objectRef"]["resource"] == "deployments"
                    && e["objectRef"].get("subresource").is_none()
                    && e["objectRef"]["namespace"] == namespace
                    && ["create", "update", "patch"].contains(&e["verb"].as_str().unwrap_or(""))
            })
            .map(|e| {
                let uri = e["requestURI"].as_str().unwrap_or_default();
                let query = |key: &str| {
                    uri.split_once('?')
                        .map(|(_, q)| q)
                        .unwrap_or_default()
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                        .unwrap_or_default()
                        .to_string()
                };
                let containers = &e["responseObject"]["spec"]["template"]["spec"]["containers"];
                let images = containers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let text =
                            |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                        (text(&c["name"]), text(&c["image"]))
                    })
                    .collect();
                DeploymentWrite {
                    name: e["objectRef"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    verb: e["verb"].as_str().unwrap_or_default().to_string(),
                    user_agent: e["userAgent"].as_str().unwrap_or_default().to_string(),
                    field_manager: query("fieldManager"),
                    dry_run: query("dryRun") == "All",
                    code: e["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                    images,
                }
            })
            .collect()
    }
}

/// One change of a container's image, from consecutive stored writes of a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageChange {
    /// The Deployment.
    pub deployment: String,
    /// The container.
    pub container: String,
    /// The image before (None: the Deployment was created with it).
    pub from: Option<String>,
    /// The image after.
    pub to: String,
    /// Who made the write.
    pub user_agent: String,
    /// Its field manager.
    pub field_manager: String,
    /// The position of that write in the list given to [`image_changes`].
    pub write: usize,
}

/// The image changes that the stored writes among `writes` made, in order (dry runs and
/// refused writes change nothing). `writes` must start with each Deployment's create for the
/// first image to count as a creation rather than a change.
pub fn image_changes(writes: &[DeploymentWrite]) -> Vec<ImageChange> {
    let mut last: std::collections::BTreeMap<(String, String), String> = Default::default();
    let mut changes = Vec::new();
    let stored = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| !w.dry_run && (200..300).contains(&w.code));
    for (index, w) in stored {
        for (container, image) in &w.images {
            let key = (w.name.clone(), container.clone());
            let before = last.insert(key, image.clone());
            if before.as_ref() != Some(image) {
                changes.push(ImageChange {
                    deployment: w.name.clone(),
                    container: container.clone(),
                    from: before,
                    to: image.clone(),
                    user_agent: w.user_agent.clone(),
                    field_manager: w.field_manager.clone(),
                    write: index,
                });
            }
        }
    }
    changes
}

/// The audit events that `keep` selects (among the lines `maybe` lets through), as request
/// records.
/// The whole audit log: the files the API server rotated away (`audit-<time>.log`, kept:
/// `--audit-log-maxbackup=0`, at 100 MB each, the size its log rotation takes when given
/// none), oldest first, then the current one. Records are only ever appended, so positions in
/// this text stay valid as it grows.
fn audit_text(log: &Path) -> String {
    let (Some(dir), Some(stem)) = (log.parent(), log.file_stem().and_then(|s| s.to_str())) else {
        return String::new();
    };
    let prefix = format!("{stem}-");
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    // The names carry the rotation time in a sortable form.
    rotated.sort();
    rotated.push(log.to_path_buf());
    rotated
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn audit_requests(
    log: &Path,
    maybe: impl Fn(&str) -> bool,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<RequestRecord> {
    let text = audit_text(log);
    text.lines()
        .filter(|line| maybe(line))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| {
            let stage = e["stage"].as_str().unwrap_or_default();
            // A watch is answered when it starts and completes when it ends (or never).
            if e["verb"] == "watch" {
                stage == "ResponseStarted"
            } else {
                stage == "ResponseComplete" || stage == "Panic"
            }
        })
        .filter(|e| keep(e))
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let object = &e["objectRef"];
            let mut resource = text(&object["resource"]);
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            RequestRecord {
                verb: text(&e["verb"]),
                resource,
                group: text(&object["apiGroup"]),
                namespace: text(&object["namespace"]),
                name: text(&object["name"]),
                user_agent: text(&e["userAgent"]),
                code: e["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            }
        })
        .collect()
}
