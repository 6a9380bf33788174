//! The `kubectl-apprelease` binary, run as a user runs it: a separate process, pointed at the
//! scenario's cluster by `KUBECONFIG`, stdin not a terminal.

use std::path::PathBuf;
use std::process::Stdio;

use crate::Cluster;

/// What one run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout, or an error with everything it printed when it did not exit 0.
    pub fn ok(self) -> anyhow::Result<String> {
        anyhow::ensure!(self.code == Some(0), "kubectl-apprelease failed: {self:?}");
        Ok(self.stdout)
    }

    /// Stderr, or an error when it did not exit 1.
    pub fn failed(self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.code == Some(1),
            "kubectl-apprelease did not exit 1: {self:?}"
        );
        Ok(self.stderr)
    }
}

/// The plugin binary: `APPRELEASE_PLUGIN_BIN`, else the one cargo built next to this test
/// (`cargo test --workspace` builds it for the plugin's own tests), else built now.
pub fn binary() -> anyhow::Result<PathBuf> {
    crate::operator::workspace_binary(
        "kubectl-apprelease",
        "kubectl-apprelease",
        "APPRELEASE_PLUGIN_BIN",
    )
}

/// Runs the plugin with `KUBECONFIG` set to the cluster's kubeconfig, and `args` as given.
pub async fn run(cluster: &Cluster, args: &[&str]) -> anyhow::Result<Run> {
    run_with(args, &[("KUBECONFIG", cluster.kubeconfig.as_os_str())]).await
}

/// Runs the plugin with only these environment variables added (no `KUBECONFIG` unless
/// given), stdin empty and not a terminal.
pub async fn run_with(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> anyhow::Result<Run> {
    let mut command = tokio::process::Command::new(binary()?);
    command
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().await?;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The cells of a table line: columns are separated by three spaces or more.
pub fn cells(line: &str) -> Vec<&str> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The rows of the table that starts at the line with `header`'s first cell, up to the
/// first empty line, split into cells; the header row first.
pub fn table<'a>(text: &'a str, first_header: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .skip_while(|l| !l.starts_with(first_header))
        .take_while(|l| !l.trim().is_empty())
        .map(cells)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_split_on_column_gaps_only() {
        assert_eq!(
            cells("shop-backup-1   1.36.0    5s    4.0 KiB   <none>       last upgrade, keepLast"),
            [
                "shop-backup-1",
                "1.36.0",
                "5s",
                "4.0 KiB",
                "<none>",
                "last upgrade, keepLast"
            ]
        );
        let text = "Name:  x\n\nTargets:\nKIND   NAME\nDeployment   a\n\nEvents:\n";
        assert_eq!(
            table(text, "KIND"),
            [vec!["KIND", "NAME"], vec!["Deployment", "a"]]
        );
    }
}
