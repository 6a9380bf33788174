//! The mongodb preset's exact Job scripts. The round trip against a real server is NOT
//! verified here: the real mongodump / mongorestore cannot be had on this machine (Debian ships
//! no MongoDB Database Tools, and the Go module proxy refuses github.com/mongodb/mongo-tools;
//! see PRESETS.md). These tests check how the scripts call mongodump / mongorestore
//! (stand-ins that record their arguments) and that every failure (tool missing, server
//! unreachable, empty or invalid archive, damaged backup) fails the Job without a report and
//! without touching anything.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use apprelease_operator::api::BackupPreset;
use apprelease_operator::jobs::names::JobKind;
use support::*;

const URI: &str = "mongodb://app:p%40ss@mongo.shop.svc:27017/shop?authSource=admin";

fn preset() -> BackupPreset {
    BackupPreset::Mongodb(database_preset(None))
}

fn secret() -> BTreeMap<String, String> {
    BTreeMap::from([("MONGODB_URI".to_string(), URI.to_string())])
}

/// A directory with a stand-in `name` that logs its arguments (one per line) to `log` and
/// then runs `body`.
fn fake_tool(scratch: &Scratch, name: &str, body: &str) -> (PathBuf, PathBuf) {
    let dir = scratch.dir(&format!("fake-{name}-{}", body.len()));
    let log = dir.join("args.log");
    let tool = dir.join(name);
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\n{body}\n",
            log.display()
        ),
    )
    .unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(&tool));
    (dir, log)
}

/// mongodump stand-in: writes a small valid gzip archive to --archive=<file>.
const DUMP_OK: &str = r#"for a in "$@"; do case "$a" in --archive=*) printf 'mongo archive bytes' | gzip -c > "${a#--archive=}";; esac; done"#;

fn args(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn mongodb_scripts_call_the_tools_with_the_right_arguments() {
    require("gzip", "gzip");
    let scratch = Scratch::new("mongo");
    let claim = scratch.dir("claim");
    let (dump_dir, dump_log) = fake_tool(&scratch, "mongodump", DUMP_OK);
    let (restore_dir, restore_log) = fake_tool(&scratch, "mongorestore", "exit 0");
    let mut mounts = Mounts::default().claim(CLAIM, &claim);
    mounts.path_prefix = vec![dump_dir, restore_dir];

    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let container = operator.job_container(&backup);
    assert_eq!(container.image.as_deref(), Some("mongo:7"));
    let run = run_container(&container, &secret(), &mounts, &scratch);
    run.assert_succeeded("backup");
    let name = format!("{}.archive.gz", backup.name);
    let partial = claim
        .join(NAMESPACE)
        .join(RELEASE)
        .join(format!(".{name}.partial"));
    assert_eq!(
        args(&dump_log),
        [
            format!("--uri={URI}"),
            format!("--archive={}", partial.display()),
            "--gzip".to_string(),
        ]
    );
    operator.job_finished(&backup, &run);
    check_recorded(&operator, &run, &claim, &name);

    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &secret(),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("restore");
    let file = claim.join(NAMESPACE).join(RELEASE).join(&name);
    assert_eq!(
        args(&restore_log),
        [
            format!("--uri={URI}"),
            format!("--archive={}", file.display()),
            "--gzip".to_string(),
            "--drop".to_string(),
            "--stopOnError".to_string(),
        ]
    );
    println!(
        "mongodb: arguments checked with stand-in tools; round trip NOT verified (no real mongodump/mongorestore here)"
    );
}

#[test]
fn mongodb_backup_failures_write_no_report_and_record_nothing() {
    let scratch = Scratch::new("mongo-fail");
    let claim = scratch.dir("claim");
    let unreachable = r#"echo "Failed: can't create session: could not connect to server: server selection error: context deadline exceeded" >&2; exit 1"#;
    let empty = r#"for a in "$@"; do case "$a" in --archive=*) : > "${a#--archive=}";; esac; done"#;
    let not_gzip = r#"for a in "$@"; do case "$a" in --archive=*) echo plain > "${a#--archive=}";; esac; done"#;
    let cases = [
        (
            "server unreachable",
            Some(unreachable),
            "could not connect to server",
        ),
        ("empty archive", Some(empty), "the backup is empty"),
        ("invalid archive", Some(not_gzip), "not valid gzip"),
        ("mongodump missing", None, "mongodump is not installed"),
    ];
    for (why, body, cause) in cases {
        let mut mounts = Mounts::default().claim(CLAIM, &claim);
        match body {
            Some(body) => mounts.path_prefix = vec![fake_tool(&scratch, "mongodump", body).0],
            None => {
                assert!(
                    find_binary("mongodump").is_none(),
                    "this machine has a real mongodump; the missing-tool case needs it absent"
                );
            }
        }
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let run = run_container(
            &operator.job_container(&backup),
            &secret(),
            &mounts,
            &scratch,
        );
        run.assert_failed_without_report(why);
        println!("mongodb {why}: exit {:?}: {}", run.code, run.stderr.trim());
        assert!(run.stderr.contains(cause), "{why}: {}", run.stderr);
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &claim, why);
    }
    // No URI in the Secret: refused before anything runs.
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let mut mounts = Mounts::default().claim(CLAIM, &claim);
    mounts.path_prefix = vec![fake_tool(&scratch, "mongodump", DUMP_OK).0];
    let run = run_container(
        &operator.job_container(&backup),
        &BTreeMap::new(),
        &mounts,
        &scratch,
    );
    run.assert_failed_without_report("no MONGODB_URI");
    assert!(
        run.stderr.contains("MONGODB_URI is not set"),
        "{}",
        run.stderr
    );
}

#[test]
fn mongodb_restore_refuses_a_damaged_backup_without_calling_mongorestore() {
    let scratch = Scratch::new("mongo-corrupt");
    let claim = scratch.dir("claim");
    let (dump_dir, _) = fake_tool(&scratch, "mongodump", DUMP_OK);
    let (restore_dir, restore_log) = fake_tool(&scratch, "mongorestore", "exit 0");
    let mut mounts = Mounts::default().claim(CLAIM, &claim);
    mounts.path_prefix = vec![dump_dir, restore_dir];
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &secret(),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    let file = claim
        .join(NAMESPACE)
        .join(RELEASE)
        .join(format!("{}.archive.gz", backup.name));
    std::fs::write(&file, b"swapped").unwrap();
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &secret(),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded());
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert!(args(&restore_log).is_empty(), "mongorestore was not called");

    // A failing mongorestore fails the Job.
    std::fs::remove_file(&file).unwrap();
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &secret(),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    let (failing_dir, _) = fake_tool(
        &scratch,
        "mongorestore",
        "echo 'Failed: E11000 duplicate key' >&2; exit 1",
    );
    mounts.path_prefix = vec![failing_dir];
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &secret(),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded());
    assert!(
        run.stderr.contains("mongorestore failed") && run.stderr.contains("E11000"),
        "{}",
        run.stderr
    );
}
