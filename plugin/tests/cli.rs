//! The binary without a cluster: its commands, and the errors that come before any API call.
//! (The commands against a cluster are tested end to end in tests/tests/plugin.rs.) These
//! tests also make `cargo test --workspace` build the binary the end-to-end tests run.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-apprelease"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_every_command() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Usage: kubectl apprelease"), "{text}");
    for command in [
        "status", "history", "backups", "backup", "restore", "retry", "approve",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} in\n{text}"
        );
    }
}

#[test]
fn a_kubeconfig_that_cannot_be_read_is_named() {
    let output = run(&["--kubeconfig", "/nonexistent/config", "status", "shop"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: cannot read the kubeconfig /nonexistent/config: "),
        "{text}"
    );
    assert!(text.contains("point --kubeconfig at"), "{text}");
}

#[test]
fn an_unknown_context_is_named() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cli.kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\n\
         users:\n- name: u\n  user: {}\ncontexts:\n- name: here\n  context: {cluster: c, user: u}\n\
         current-context: here\n",
    )
    .unwrap();
    let path = path.display().to_string();
    let output = run(&[
        "--kubeconfig",
        &path,
        "--context",
        "there",
        "history",
        "shop",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: cannot use the context \"there\" of the kubeconfig: "),
        "{text}"
    );
    assert!(text.contains("kubectl config get-contexts"), "{text}");

    // Nothing listens on port 1: the error says where it tried.
    let output = run(&["--kubeconfig", &path, "status", "shop"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: cannot reach the cluster at http://127.0.0.1:1/"),
        "{text}"
    );
}

#[test]
fn restore_needs_a_backup_id() {
    let output = run(&["restore", "shop"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a usage error, as clap reports them"
    );
    assert!(
        stderr(&output).contains("--backup <ID>"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_timeout_must_be_a_duration() {
    let output = run(&["backup", "shop", "--wait", "--timeout", "soon"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("a duration such as 90s, 15m or 1h30m"),
        "{}",
        stderr(&output)
    );
}
