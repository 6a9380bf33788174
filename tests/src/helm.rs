//! The real helm (`testbed/build.sh --helm`), run as a user would against a cluster.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The helm binary: `APPRELEASE_HELM_BIN`. Not built here (scripts/test.sh builds and
/// exports it with the control plane): without it, the error says how to get it.
pub fn binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("APPRELEASE_HELM_BIN")
        .map(PathBuf::from)
        .context(
            "APPRELEASE_HELM_BIN is not set: build helm with `bash testbed/build.sh --helm` \
             (about 7 minutes the first time on two cores) and set APPRELEASE_HELM_BIN to \
             the helm in the directory it prints last; scripts/test.sh does both",
        )
}

/// helm with a kubeconfig and a scratch home of its own (no user config or repositories).
pub struct Helm {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Helm {
    /// The helm `bin` against the cluster of `kubeconfig`, keeping its files under `dir`.
    pub fn new(bin: PathBuf, kubeconfig: &Path, dir: &Path) -> Self {
        Self {
            bin,
            kubeconfig: kubeconfig.to_path_buf(),
            home: dir.join("helm"),
        }
    }

    /// Runs `helm ARGS` from the repository root and returns its stdout; fails with its
    /// stderr.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = tokio::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(&repo)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .output()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        anyhow::ensure!(
            output.status.success(),
            "helm {} failed ({}):\n{stderr}{stdout}",
            args.join(" "),
            output.status
        );
        Ok(stdout)
    }
}
