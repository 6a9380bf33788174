//! The demo, run as a user runs it: it tells the story it promises, start to end.

use std::process::Command;

#[test]
fn demo_upgrades_then_rolls_back_a_broken_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_apprelease-demo"))
        // Faster than the default, so that the broken rollout's deadline passes sooner.
        .args(["--exit", "--time-scale", "120"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "apprelease/meet applied",
        "Ready=True     Succeeded: 1.0.0 runs and every target is available",
        "BackingUp",
        "Migrating",
        "event Normal  BackupSucceeded",
        "Ready=True     Succeeded: 1.1.0 runs and every target is available",
        "Restoring",
        "Ready=False    RolledBack: Deployment backend did not become available with 1.2.0",
        "1.1.0   1.2.0   RolledBack   RolloutFailed   meet-backup-2",
        "deployment/backend runs ghcr.io/example/meet-backend:1.1.0",
        "deployment/frontend runs ghcr.io/example/meet-frontend:1.1.0",
        "export KUBECONFIG=",
    ] {
        assert!(
            stdout.contains(expected),
            "the demo did not show {expected:?}:\n{stdout}"
        );
    }
    // The server's own printer columns are shown.
    assert!(
        stdout.contains("NAME   TARGET   CURRENT   READY   REASON"),
        "{stdout}"
    );
}
