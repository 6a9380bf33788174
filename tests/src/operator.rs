//! The real operator binary, run as a separate process against the scenario's cluster.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use crate::Cluster;

/// A running `apprelease-operator run`, killed (SIGKILL) when dropped.
pub struct Operator {
    child: Child,
    log: PathBuf,
    args: Vec<String>,
    starts: u32,
}

impl Operator {
    /// Starts the operator watching the scenario's namespace.
    pub fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        let args = vec![
            "run".to_string(),
            "--namespace".into(),
            cluster.namespace.clone(),
            "--kubeconfig".into(),
            cluster.kubeconfig.display().to_string(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ];
        let log = cluster.dir.join("operator.log");
        let child = spawn(&args, &log)?;
        Ok(Self {
            child,
            log,
            args,
            starts: 1,
        })
    }

    /// Kills the process at once, as a crash or an eviction would (SIGKILL), and starts it
    /// again.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.starts += 1;
        self.child = spawn(&self.args, &self.log)?;
        Ok(())
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The last lines of the operator's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- operator log ({}) ---\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

fn spawn(args: &[String], log: &Path) -> anyhow::Result<Child> {
    let out = File::options().create(true).append(true).open(log)?;
    let mut command = Command::new(binary()?);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // Dies with the test (even a killed one) instead of running on as an orphan.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .args(args)
        .env("RUST_LOG", "info,kube=warn")
        .env("NO_COLOR", "1")
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .context("starting apprelease-operator")
}

/// The operator binary: `APPRELEASE_OPERATOR_BIN`, else the one cargo built next to this
/// test (`cargo test --workspace` builds it), else built now.
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("APPRELEASE_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    // target/<profile>/deps/<test> → target/<profile>/apprelease-operator
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary location")?;
    let path = profile_dir.join("apprelease-operator");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "apprelease-operator"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status()?;
        anyhow::ensure!(status.success(), "building apprelease-operator failed");
    }
    Ok(path)
}
