//! Shared helpers of the preset tests: scratch directories, tiny filesystems, and the glue
//! that takes the operator's own decisions and Jobs and runs the Job's exact script on this
//! machine.
//!
//! A Job runs `/bin/sh -c <script>` in a container with the storage claim at `/backups`, the
//! archived claim at `/data` (volume preset), the Secret's keys as environment and the
//! termination log at `/dev/termination-log`. Here the same script runs with the claims mapped
//! to directories through APPRELEASE_BACKUP_ROOT / APPRELEASE_VOLUME_ROOT and the report
//! redirected with APPRELEASE_TERMINATION_LOG; everything else is the Job's own environment.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apprelease_operator::api::*;
use apprelease_operator::jobs;
use apprelease_operator::jobs::names::JobKind;
use apprelease_operator::plan::{
    Action, Decision, DeploymentState, JobOutcome, JobRequest, JobState, Observed, decide,
};
use chrono::{TimeZone, Utc};
use k8s_openapi::api::core::v1::Container;
use kube::api::ObjectMeta;

pub const NAMESPACE: &str = "shop";
pub const RELEASE: &str = "shop";
pub const SECRET: &str = "shop-db";
pub const CLAIM: &str = "shop-backups";

// ---------------------------------------------------------------------------------------------
// Scratch space

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory of its own for one test, removed on drop (set APPRELEASE_KEEP_SCRATCH to keep).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(label: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "apprelease-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("APPRELEASE_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A tiny tmpfs (root only), unmounted on drop: a full disk or a read-only claim.
pub struct TinyFs {
    pub path: PathBuf,
}

impl TinyFs {
    pub fn mount(path: &Path, options: &str) -> Self {
        assert!(
            is_root(),
            "mounting a tiny tmpfs needs root (the disk-full and read-only tests run as root in CI)"
        );
        std::fs::create_dir_all(path).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(path),
        );
        Self {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

pub fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u")).trim() == "0"
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test (never skips it) when a tool the test needs is missing.
pub fn require(binary: &str, package: &str) -> PathBuf {
    find_binary(binary).unwrap_or_else(|| {
        panic!("{binary} is not installed: this test needs a real server; run `apt-get install -y {package}`")
    })
}

pub fn find_binary(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).exists().then(|| PathBuf::from(binary));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(binary))
        .find(|p| p.exists())
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `ready` until it holds, for at most `limit`.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's side: an AppRelease with a preset, and the planner's decisions

/// `shop` upgrading from 1.0 to 2.0, backed up by `preset`, restoring it on rollback.
pub fn release(preset: BackupPreset) -> AppRelease {
    let spec = AppReleaseSpec {
        version: "2.0".into(),
        targets: vec![Target::deployment("web")],
        backup: Some(BackupSpec {
            template: None,
            preset: Some(preset),
            components: Vec::new(),
            keep_last: 5,
            max_age: None,
            timeout: "10m".into(),
        }),
        migration: None,
        rollout: RolloutSpec::default(),
        verify: None,
        rollback: RollbackSpec {
            database: DatabaseRollback::Restore,
            ..RollbackSpec::default()
        },
        maintenance_windows: Vec::new(),
        suspend: false,
        notifications: None,
        approval: Approval::default(),
        downgrade: DowngradePolicy::default(),
    };
    let mut r = AppRelease::new(RELEASE, spec);
    r.metadata = ObjectMeta {
        name: Some(RELEASE.into()),
        namespace: Some(NAMESPACE.into()),
        generation: Some(1),
        uid: Some("uid-shop".into()),
        ..Default::default()
    };
    r
}

pub fn database_preset(image: Option<&str>) -> DatabasePreset {
    DatabasePreset {
        connection_secret: SECRET.into(),
        storage: BackupStorage { pvc: CLAIM.into() },
        image: image.map(String::from),
        security_context: None,
    }
}

/// The cluster: Deployment `web` running 1.0, ready.
pub fn cluster() -> Observed {
    let web = DeploymentState {
        containers: vec![("web".into(), "example/web:1.0".into())],
        replicas: 2,
        generation: 1,
        observed_generation: 1,
        status_replicas: 2,
        updated_replicas: 2,
        available_replicas: 2,
        ..Default::default()
    };
    Observed {
        now: Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap(),
        deployments: BTreeMap::from([("web".to_string(), web)]),
        jobs: BTreeMap::new(),
        peers: Vec::new(),
        requests: Vec::new(),
    }
}

/// The operator and a make-believe cluster around it, so a test can walk an upgrade: the
/// planner decides, Jobs are run here for real, Deployments are simulated.
pub struct Operator {
    pub release: AppRelease,
    pub cluster: Observed,
}

impl Operator {
    pub fn new(preset: BackupPreset) -> Self {
        Self {
            release: release(preset),
            cluster: cluster(),
        }
    }

    /// One reconcile; the status is written back.
    pub fn decide(&mut self) -> Decision {
        let decision = decide(&self.release, &self.cluster);
        self.release.status = Some(decision.status.clone());
        decision
    }

    pub fn status(&self) -> &AppReleaseStatus {
        self.release.status.as_ref().unwrap()
    }

    /// Reconciles until the planner asks for a Job of `kind`; carries out image and scale
    /// actions like a cluster whose new version never becomes ready.
    pub fn until_job(&mut self, kind: JobKind) -> JobRequest {
        for _ in 0..12 {
            let decision = self.decide();
            for action in &decision.actions {
                match action {
                    Action::CreateJob(request) if request.kind == kind => return request.clone(),
                    Action::CreateJob(request) => panic!("unexpected Job {request:?}"),
                    Action::SetImages {
                        deployment, images, ..
                    } => {
                        let d = self.cluster.deployments.get_mut(deployment).unwrap();
                        for (container, image) in images {
                            if let Some(slot) =
                                d.containers.iter_mut().find(|(c, _)| c == container)
                            {
                                slot.1 = image.clone();
                            }
                        }
                        d.generation += 1;
                        d.observed_generation = d.generation;
                        // 2.0 never becomes available: the rollout fails and is rolled back.
                        let broken = d.containers.iter().any(|(_, i)| i.ends_with(":2.0"));
                        d.updated_replicas = if broken { 0 } else { d.replicas };
                        d.available_replicas = if broken { 0 } else { d.replicas };
                        d.deadline_exceeded = broken;
                    }
                    Action::Scale {
                        deployment,
                        replicas,
                        ..
                    } => {
                        let d = self.cluster.deployments.get_mut(deployment).unwrap();
                        d.replicas = *replicas;
                        d.generation += 1;
                        d.observed_generation = d.generation;
                        d.status_replicas = *replicas;
                    }
                    // The Jobs here are recorded as owned already.
                    Action::HandOver { .. } => {}
                    // Only StatefulSet targets have pods to delete; these are Deployments.
                    Action::DeletePod { .. } => panic!("no StatefulSet here: {action:?}"),
                }
            }
            self.cluster.now += chrono::Duration::seconds(10);
        }
        panic!(
            "the planner never asked for a {kind} Job: {:#?}",
            self.status()
        );
    }

    /// Tells the planner how a Job ended, and reconciles once.
    pub fn job_finished(&mut self, request: &JobRequest, run: &ScriptRun) -> Decision {
        self.cluster
            .jobs
            .insert(request.name.clone(), run.job_state(self.cluster.now));
        self.cluster.now += chrono::Duration::seconds(5);
        self.decide()
    }

    /// The Job the operator would create for `request`.
    pub fn job_container(&self, request: &JobRequest) -> Container {
        let job = jobs::build(&self.release, request).expect("the Job builds");
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers.len(), 1);
        pod.containers[0].clone()
    }
}

/// A failed backup left nothing behind: no file on the claim, and — once the operator sees the
/// Job's outcome — no inventory entry and no change to any target.
pub fn assert_failed_backup_left_nothing(
    operator: &mut Operator,
    backup: &JobRequest,
    run: &ScriptRun,
    claim: &Path,
    why: &str,
) {
    assert!(
        files_under(claim).is_empty(),
        "{why}: {:?}",
        files_under(claim)
    );
    let decision = operator.job_finished(backup, run);
    assert_backup_not_recorded(operator, &decision, why);
}

/// What the decision after a failed backup must show: no inventory entry, no change to any
/// target, the upgrade aborted with BackupFailed.
pub fn assert_backup_not_recorded(operator: &Operator, decision: &Decision, why: &str) {
    let status = operator.status();
    assert!(
        status.backups.is_empty(),
        "{why}: a failed backup was recorded: {:?}",
        status.backups
    );
    assert!(
        decision
            .actions
            .iter()
            .all(|a| !matches!(a, Action::SetImages { .. } | Action::Scale { .. })),
        "{why}: the upgrade proceeded: {:?}",
        decision.actions
    );
    assert!(
        status.upgrade.is_none(),
        "{why}: the upgrade is still in flight"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "BackupFailed", "{why}: {}", ready.message);
    assert_eq!(
        operator.cluster.deployments["web"].containers[0].1,
        "example/web:1.0"
    );
}

// ---------------------------------------------------------------------------------------------
// Running a Job's script here

/// Where the Job's claims are on this machine.
#[derive(Default, Clone)]
pub struct Mounts {
    /// Claim name → directory.
    pub claims: BTreeMap<String, PathBuf>,
    /// Extra directories put first on PATH (fake tools).
    pub path_prefix: Vec<PathBuf>,
    /// Replaces PATH entirely (to take a tool away).
    pub path: Option<String>,
    /// The shell that runs the script, instead of /bin/sh.
    pub shell: Option<PathBuf>,
}

impl Mounts {
    pub fn claim(mut self, name: &str, dir: &Path) -> Self {
        self.claims.insert(name.into(), dir.to_path_buf());
        self
    }

    /// Runs the script the way the Alpine-based default images would: BusyBox `sh` and
    /// BusyBox applets only (no GNU coreutils, tar, sed or awk), plus the named database tools.
    pub fn busybox(mut self, scratch: &Scratch, tools: &[&str]) -> Self {
        let busybox = require("busybox", "busybox");
        let dir = scratch.dir("busybox-bin");
        let list = run_ok(Command::new(&busybox).arg("--list"));
        for applet in list.lines().filter(|a| !a.is_empty()) {
            let link = dir.join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink(&busybox, &link).unwrap();
            }
        }
        for tool in tools {
            let real = find_binary(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
            let link = dir.join(tool);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(real, &link).unwrap();
        }
        self.shell = Some(dir.join("sh"));
        self.path = Some(dir.display().to_string());
        self
    }
}

/// How a script run ended.
pub struct ScriptRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The termination log's content, if the script wrote one.
    pub report: Option<String>,
}

impl ScriptRun {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// The Job as the operator would observe it: Complete or Failed, and the termination
    /// message — the report, or with FallbackToLogsOnError the last log lines of a failure.
    pub fn job_state(&self, now: chrono::DateTime<Utc>) -> JobState {
        let logs: String = format!("{}{}", self.stdout, self.stderr);
        let tail: String = logs
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        if self.succeeded() {
            JobState {
                outcome: JobOutcome::Succeeded,
                termination_message: self.report.clone(),
                finished_at: Some(now),
                owned: true,
            }
        } else {
            JobState {
                outcome: JobOutcome::Failed(format!(
                    "BackoffLimitExceeded: Job has reached the specified backoff limit; the container said: {tail}"
                )),
                termination_message: self
                    .report
                    .clone()
                    .or_else(|| (!tail.is_empty()).then_some(tail)),
                finished_at: Some(now),
                owned: true,
            }
        }
    }

    pub fn assert_failed_without_report(&self, why: &str) {
        assert!(
            !self.succeeded(),
            "{why}: the script succeeded:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.report.is_none(),
            "{why}: a failed script wrote a report: {:?}",
            self.report
        );
    }

    pub fn assert_succeeded(&self, why: &str) {
        assert!(
            self.succeeded(),
            "{why}: the script failed ({:?}):\n{}\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the Job's container here: its exact script, its environment, the Secret's values
/// for its `envFrom`, and its claims mapped to directories.
pub fn run_container(
    container: &Container,
    secret: &BTreeMap<String, String>,
    mounts: &Mounts,
    scratch: &Scratch,
) -> ScriptRun {
    let command = container
        .command
        .as_ref()
        .expect("a preset container has a command");
    assert_eq!(&command[..2], ["/bin/sh", "-c"], "presets run sh -c");
    assert!(container.args.is_none());
    let script = &command[2];
    let shell = mounts
        .shell
        .clone()
        .unwrap_or_else(|| PathBuf::from("/bin/sh"));
    let mut cmd = Command::new(shell);
    cmd.arg("-c").arg(script);
    cmd.env_clear();
    let path = mounts.path.clone().unwrap_or_else(|| {
        let mut parts: Vec<String> = mounts
            .path_prefix
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        parts.push(std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()));
        parts.join(":")
    });
    cmd.env("PATH", path);
    cmd.env("HOME", &scratch.path);
    cmd.env("LANG", "C.UTF-8");
    for var in container.env.iter().flatten() {
        let value = var
            .value
            .clone()
            .unwrap_or_else(|| panic!("{} has no literal value", var.name));
        cmd.env(&var.name, value);
    }
    for source in container.env_from.iter().flatten() {
        let secret_ref = source.secret_ref.as_ref().expect("envFrom a Secret");
        assert_eq!(secret_ref.name, SECRET, "the preset's connection Secret");
        cmd.envs(secret);
    }
    for mount in container.volume_mounts.iter().flatten() {
        let claim = match mount.name.as_str() {
            "backups" => CLAIM.to_string(),
            "data" => "shop-data".to_string(),
            other => panic!("unexpected volume {other}"),
        };
        let dir = mounts
            .claims
            .get(&claim)
            .unwrap_or_else(|| panic!("test gives no directory for claim {claim}"));
        let var = match mount.mount_path.as_str() {
            "/backups" => "APPRELEASE_BACKUP_ROOT",
            "/data" => "APPRELEASE_VOLUME_ROOT",
            other => panic!("unexpected mount path {other}"),
        };
        cmd.env(var, dir);
    }
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let report = scratch.path.join(format!("termination-log-{n}"));
    cmd.env("APPRELEASE_TERMINATION_LOG", &report);
    let output = cmd.output().expect("sh runs");
    let report = std::fs::read_to_string(&report)
        .ok()
        .filter(|r| !r.trim().is_empty());
    let run = ScriptRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
    };
    if std::env::var_os("APPRELEASE_SHOW_SCRIPTS").is_some() {
        eprintln!("--- exit {:?}\n{}{}", run.code, run.stdout, run.stderr);
    }
    run
}

/// Files (not directories) under `dir`, relative, sorted; for "nothing was left behind".
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn sha256_of(path: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Checks a backup run against the file it wrote and the inventory entry the operator made.
pub fn check_recorded(operator: &Operator, run: &ScriptRun, root: &Path, file_name: &str) {
    let file = root.join(NAMESPACE).join(RELEASE).join(file_name);
    assert!(file.is_file(), "{} exists", file.display());
    let size = std::fs::metadata(&file).unwrap().len() as i64;
    let sha = sha256_of(&file);
    let report: serde_json::Value =
        serde_json::from_str(run.report.as_deref().expect("a report")).unwrap();
    let location = format!("pvc://{CLAIM}/{NAMESPACE}/{RELEASE}/{file_name}");
    assert_eq!(report["location"], location);
    assert_eq!(report["sizeBytes"], size);
    assert_eq!(report["sha256"], sha.as_str());
    let sidecar =
        std::fs::read_to_string(file.with_file_name(format!("{file_name}.sha256"))).unwrap();
    assert_eq!(sidecar, format!("{sha}  {file_name}\n"));
    let record = &operator.status().backups[0];
    assert_eq!(record.location.as_deref(), Some(location.as_str()));
    assert_eq!(record.size_bytes, Some(size));
    assert_eq!(record.sha256.as_deref(), Some(sha.as_str()));
    // Only the backup and its checksum are left: no partial or scratch files.
    let left = files_under(&root.join(NAMESPACE).join(RELEASE));
    assert!(
        left.iter()
            .all(|f| !f.starts_with('.') && !f.contains("/.")),
        "scratch files left behind: {left:?}"
    );
}

/// Nothing but earlier complete backups may be in the release's directory after a failure.
pub fn assert_nothing_partial(root: &Path) {
    let left = files_under(root);
    assert!(
        left.iter()
            .all(|f| !f.contains("partial") && !f.contains(".work")),
        "a failed backup left files behind: {left:?}"
    );
}
