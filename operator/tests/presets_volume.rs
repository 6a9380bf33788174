//! The volume preset's exact Job scripts against a real directory tree: files of many sizes,
//! binary content, dotfiles, nested and empty directories, symlinks, permissions.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apprelease_operator::api::{BackupPreset, BackupStorage, VolumePreset};
use apprelease_operator::jobs::names::JobKind;
use support::files::{damage, manifest, seed};
use support::*;

const DATA_CLAIM: &str = "shop-data";

fn preset() -> BackupPreset {
    BackupPreset::Volume(VolumePreset {
        claim: DATA_CLAIM.into(),
        storage: BackupStorage { pvc: CLAIM.into() },
        image: None,
        security_context: None,
    })
}

fn backup_file(claim: &Path, id: &str) -> PathBuf {
    claim
        .join(NAMESPACE)
        .join(RELEASE)
        .join(format!("{id}.tar.gz"))
}

#[test]
fn volume_backup_damage_restore_round_trip_loses_nothing() {
    round_trip(false);
}

/// The same with BusyBox sh and applets, as in the default image (alpine).
#[test]
fn volume_round_trip_with_busybox_as_in_alpine() {
    round_trip(true);
}

fn round_trip(busybox: bool) {
    require("tar", "tar");
    let scratch = Scratch::new("volume");
    let data = scratch.dir("data");
    let claim = scratch.dir("claim");
    seed(&data, 1000);
    let before = manifest(&data);
    let files_before = before.values().filter(|(k, _, _)| *k == 'f').count();
    assert!(files_before >= 1000);
    let mut mounts = Mounts::default()
        .claim(CLAIM, &claim)
        .claim(DATA_CLAIM, &data);
    if busybox {
        mounts = mounts.busybox(&scratch, &[]);
    }

    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let container = operator.job_container(&backup);
    let run = run_container(&container, &BTreeMap::new(), &mounts, &scratch);
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    check_recorded(&operator, &run, &claim, &format!("{}.tar.gz", backup.name));
    assert_eq!(
        manifest(&data),
        before,
        "the backup does not change the volume"
    );

    damage(&data);
    assert_ne!(manifest(&data), before);

    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &BTreeMap::new(),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("restore");
    operator.job_finished(&restore, &run);

    let after = manifest(&data);
    let diff = Diff::of(&before, &after);
    println!(
        "volume round trip{}: {} entries compared ({files_before} files, sha256 each), {} lost, {} changed, {} extra",
        if busybox { " (busybox)" } else { "" },
        diff.compared,
        diff.lost,
        diff.changed,
        diff.extra
    );
    assert!(diff.is_clean(), "{diff}");
    assert_eq!(after, before);
}

#[test]
fn volume_backup_failures_write_no_report_and_record_nothing() {
    require("tar", "tar");
    let scratch = Scratch::new("volume-fail");
    let data = scratch.dir("data");
    seed(&data, 200);
    let good_claim = scratch.dir("claim");
    let full = TinyFs::mount(&scratch.path.join("full"), "size=64k");
    let read_only = TinyFs::mount(&scratch.path.join("ro"), "ro,size=64k");
    let unreadable_data = scratch.path.join("not-mounted");
    let cases: Vec<(&str, PathBuf, PathBuf, &str)> = vec![
        (
            "unwritable claim",
            read_only.path.clone(),
            data.clone(),
            "Read-only file system",
        ),
        (
            "full disk",
            full.path.clone(),
            data.clone(),
            "No space left on device",
        ),
        (
            "archived claim not mounted",
            good_claim.clone(),
            unreadable_data,
            "is not mounted",
        ),
    ];
    for (why, claim, data, cause) in cases {
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let mounts = Mounts::default()
            .claim(CLAIM, &claim)
            .claim(DATA_CLAIM, &data);
        let run = run_container(
            &operator.job_container(&backup),
            &BTreeMap::new(),
            &mounts,
            &scratch,
        );
        run.assert_failed_without_report(why);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("failed"))
            .unwrap_or("");
        println!("volume {why}: exit {:?}: {line}", run.code);
        assert!(
            run.stderr.contains("apprelease volume backup failed") && run.stderr.contains(cause),
            "{why}: {}",
            run.stderr
        );
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &claim, why);
    }
    drop(full);
    drop(read_only);
}

#[test]
fn volume_restore_that_cannot_fit_changes_nothing() {
    require("tar", "tar");
    let scratch = Scratch::new("volume-nofit");
    let claim = scratch.dir("claim");
    // The volume is a small filesystem: the archive's content fits once, not twice.
    let small = TinyFs::mount(&scratch.path.join("data"), "size=512k");
    let data = small.path.clone();
    for i in 0..5 {
        std::fs::write(data.join(format!("f{i}")), vec![i as u8 + 1; 80 * 1024]).unwrap();
    }
    let mounts = Mounts::default()
        .claim(CLAIM, &claim)
        .claim(DATA_CLAIM, &data);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &BTreeMap::new(),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    // The new version filled the volume differently.
    std::fs::remove_file(data.join("f0")).unwrap();
    std::fs::write(data.join("new"), vec![9u8; 60 * 1024]).unwrap();
    let current = manifest(&data);
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &BTreeMap::new(),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded(), "{}", run.stdout);
    assert!(run.stderr.contains("was not changed"), "{}", run.stderr);
    assert_eq!(
        manifest(&data),
        current,
        "a restore that cannot fit changes nothing"
    );
    println!(
        "volume restore without room: refused before deleting anything: {}",
        run.stderr.lines().last().unwrap_or("")
    );
    drop(small);
}

#[test]
fn volume_restore_refuses_a_damaged_archive() {
    require("tar", "tar");
    let scratch = Scratch::new("volume-corrupt");
    let data = scratch.dir("data");
    let claim = scratch.dir("claim");
    seed(&data, 50);
    let mounts = Mounts::default()
        .claim(CLAIM, &claim)
        .claim(DATA_CLAIM, &data);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &BTreeMap::new(),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    std::fs::write(data.join("after-the-backup"), "x").unwrap();
    let current = manifest(&data);
    let file = backup_file(&claim, &backup.name);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&file, bytes).unwrap();
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &BTreeMap::new(),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded());
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert_eq!(manifest(&data), current, "the volume was not touched");
}
