//! The redis preset's exact Job scripts against a real Redis server started here (Debian's
//! `redis-server` package, which also provides the redis-server the restore script loads the
//! snapshot into).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use apprelease_operator::api::BackupPreset;
use apprelease_operator::jobs::names::JobKind;
use support::redis::{PASSWORD, Redis};
use support::*;

fn preset() -> BackupPreset {
    BackupPreset::Redis(database_preset(None))
}

#[test]
fn redis_backup_damage_restore_round_trip_loses_nothing() {
    round_trip(false);
}

/// The same with BusyBox sh and applets, as in the default image (redis:7-alpine).
#[test]
fn redis_round_trip_with_busybox_as_in_alpine() {
    round_trip(true);
}

fn round_trip(busybox: bool) {
    let redis = Redis::start();
    redis.seed(1000);
    let before0 = redis.dataset(0);
    let before3 = redis.dataset(3);
    assert_eq!(before0.len(), 1002);
    assert_eq!(before3.len(), 100);

    let scratch = Scratch::new("redis-claim");
    let claim = scratch.dir("claim");
    let mut mounts = Mounts::default().claim(CLAIM, &claim);
    let mut secret = redis.secret(PASSWORD);
    if busybox {
        mounts = mounts.busybox(&scratch, &["redis-cli", "redis-server", "redis-check-rdb"]);
        // And with an ACL user instead of the default user's password.
        redis.cmd(
            0,
            &[
                b"ACL",
                b"SETUSER",
                b"backup",
                b"on",
                b">acl \"pw\"",
                b"~*",
                b"&*",
                b"+@all",
            ],
        );
        secret.insert("REDIS_USERNAME".into(), "backup".into());
        secret.insert("REDISCLI_AUTH".into(), "acl \"pw\"".into());
    }
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(&operator.job_container(&backup), &secret, &mounts, &scratch);
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    check_recorded(&operator, &run, &claim, &format!("{}.rdb", backup.name));

    redis.damage();
    assert_ne!(redis.dataset(0), before0);

    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &secret,
        &mounts,
        &scratch,
    );
    run.assert_succeeded("restore");
    operator.job_finished(&restore, &run);

    let after0 = redis.dataset(0);
    let after3 = redis.dataset(3);
    let diff = Diff::of(&before0, &after0) + Diff::of(&before3, &after3);
    let ttls = after0
        .values()
        .chain(after3.values())
        .filter(|k| k.ttl)
        .count();
    println!(
        "redis round trip{}: {} keys compared (db0 {}, db3 {}), {} lost, {} changed, {} extra; {ttls} keys kept their TTL",
        if busybox { " (busybox, ACL user)" } else { "" },
        diff.compared,
        before0.len(),
        before3.len(),
        diff.lost,
        diff.changed,
        diff.extra
    );
    assert!(diff.is_clean(), "{diff}");
    assert_eq!(after0, before0);
    assert_eq!(after3, before3);
}

#[test]
fn redis_backup_failures_write_no_report_and_record_nothing() {
    let redis = Redis::start();
    // Enough random data that the snapshot cannot fit a 64 KiB filesystem.
    let mut big = String::new();
    for i in 0..400 {
        let value: String = (0..64)
            .map(|j| {
                format!(
                    "{:08x}",
                    (i * 2_654_435_761_u64 + j * 40_503).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32
                )
            })
            .collect();
        big.push_str(&format!("SET big:{i} {value}\n"));
    }
    redis.pipe(0, &big);
    let scratch = Scratch::new("redis-fail");
    let good_claim = scratch.dir("claim");
    let full = TinyFs::mount(&scratch.path.join("full"), "size=64k");
    let read_only = TinyFs::mount(&scratch.path.join("ro"), "ro,size=64k");
    let mut unreachable = redis.secret(PASSWORD);
    unreachable.insert("REDIS_PORT".into(), free_port().to_string());
    let cases: Vec<(&str, BTreeMap<String, String>, PathBuf, &str)> = vec![
        (
            "wrong password",
            redis.secret("wrong"),
            good_claim.clone(),
            "WRONGPASS",
        ),
        (
            "unreachable host",
            unreachable,
            good_claim.clone(),
            "Connection refused",
        ),
        (
            "unwritable claim",
            redis.secret(PASSWORD),
            read_only.path.clone(),
            "Read-only file system",
        ),
        (
            "full disk",
            redis.secret(PASSWORD),
            full.path.clone(),
            "short write|No space left on device",
        ),
    ];
    for (why, secret, claim, cause) in cases {
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let mounts = Mounts::default().claim(CLAIM, &claim);
        let run = run_container(&operator.job_container(&backup), &secret, &mounts, &scratch);
        run.assert_failed_without_report(why);
        let first_line = run
            .stderr
            .lines()
            .find(|l| l.contains("failed"))
            .unwrap_or("");
        println!("redis {why}: exit {:?}: {first_line}", run.code);
        assert!(
            run.stderr.contains("apprelease redis backup failed")
                && cause.split('|').any(|c| run.stderr.contains(c)),
            "{why}: {}",
            run.stderr
        );
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &claim, why);
    }
    drop(full);
    drop(read_only);
}

#[test]
fn redis_restore_refuses_a_damaged_snapshot_and_leaves_the_server_alone() {
    let redis = Redis::start();
    redis.seed(100);
    let scratch = Scratch::new("redis-corrupt");
    let claim = scratch.dir("claim");
    let mounts = Mounts::default().claim(CLAIM, &claim);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &redis.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    redis.cmd(0, &[b"SET", b"written-after-the-backup", b"1"]);
    let current = redis.dataset(0);
    let file = claim
        .join(NAMESPACE)
        .join(RELEASE)
        .join(format!("{}.rdb", backup.name));
    flip_middle_byte(&file);
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &redis.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded());
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert_eq!(redis.dataset(0), current, "the server was not touched");
    println!(
        "redis damaged snapshot: restore refused: {}",
        run.stderr.trim()
    );
}
