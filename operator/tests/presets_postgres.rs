//! The postgres preset's exact Job scripts against a real PostgreSQL server started here
//! (Debian's `postgresql` package; run as the `postgres` user when the tests run as root).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use apprelease_operator::api::BackupPreset;
use apprelease_operator::jobs::names::JobKind;
use support::postgres::{DATABASE, PASSWORD, Postgres};
use support::*;

fn preset() -> BackupPreset {
    BackupPreset::Postgres(database_preset(None))
}

#[test]
fn postgres_backup_damage_restore_round_trip_loses_nothing() {
    round_trip(false);
}

/// The same with BusyBox sh and applets, as in the default image (postgres:16-alpine).
#[test]
fn postgres_round_trip_with_busybox_as_in_alpine() {
    round_trip(true);
}

fn round_trip(busybox: bool) {
    let pg = Postgres::start();
    pg.seed(1000);
    let before_customers = pg.rows("customers");
    let before_orders = pg.rows("orders");
    let before_sums = (pg.table_checksum("customers"), pg.table_checksum("orders"));
    assert_eq!(before_customers.len(), 1000);

    let scratch = Scratch::new("pg-claim");
    let claim = scratch.dir("claim");
    let mut mounts = Mounts::default().claim(CLAIM, &claim);
    if busybox {
        mounts = mounts.busybox(&scratch, &["pg_dump", "pg_restore", "psql"]);
    }
    let mut operator = Operator::new(preset());

    // Backup: the operator's Job, run here.
    let backup = operator.until_job(JobKind::Backup);
    let container = operator.job_container(&backup);
    let run = run_container(&container, &pg.secret(PASSWORD), &mounts, &scratch);
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    check_recorded(&operator, &run, &claim, &format!("{}.pgdump", backup.name));

    pg.damage();
    assert_ne!(pg.rows("customers"), before_customers, "the damage is real");

    // Rollback with Restore: the planner scales down and asks for the restore Job.
    let restore = operator.until_job(JobKind::Restore);
    assert_eq!(restore.backup_id.as_deref(), Some(backup.name.as_str()));
    assert_eq!(operator.cluster.deployments["web"].replicas, 0);
    let container = operator.job_container(&restore);
    let run = run_container(&container, &pg.secret(PASSWORD), &mounts, &scratch);
    run.assert_succeeded("restore");
    let decision = operator.job_finished(&restore, &run);
    assert!(!decision.actions.is_empty(), "the old version comes back");

    let after_customers = pg.rows("customers");
    let after_orders = pg.rows("orders");
    let diff =
        Diff::of(&before_customers, &after_customers) + Diff::of(&before_orders, &after_orders);
    let after_sums = (pg.table_checksum("customers"), pg.table_checksum("orders"));
    println!(
        "postgres round trip{}: {} rows compared ({} customers, {} orders), {} lost, {} changed, {} extra; checksums before {before_sums:?} after {after_sums:?}",
        if busybox { " (busybox)" } else { "" },
        diff.compared,
        before_customers.len(),
        before_orders.len(),
        diff.lost,
        diff.changed,
        diff.extra
    );
    assert!(diff.is_clean(), "{diff}");
    assert_eq!(after_customers, before_customers);
    assert_eq!(after_orders, before_orders);
    assert_eq!(after_sums, before_sums);
    pg.assert_schema_as_seeded();
}

#[test]
fn postgres_backup_failures_write_no_report_and_record_nothing() {
    let pg = Postgres::start();
    pg.seed(50);
    // A table too big for a 64 KiB filesystem even compressed (random hex).
    pg.psql(
        "CREATE TABLE blobs AS SELECT i AS id, (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 32) j) AS data FROM generate_series(1, 2000) i",
    );
    let scratch = Scratch::new("pg-fail");
    let good_claim = scratch.dir("claim");
    let closed_port = free_port();
    let full = TinyFs::mount(&scratch.path.join("full"), "size=64k");
    let read_only = TinyFs::mount(&scratch.path.join("ro"), "ro,size=64k");

    let mut unreachable = pg.secret(PASSWORD);
    unreachable.insert("PGPORT".into(), closed_port.to_string());
    let mut no_database = pg.secret(PASSWORD);
    no_database.insert("PGDATABASE".into(), "does_not_exist".into());
    let cases: Vec<(&str, BTreeMap<String, String>, PathBuf, &str)> = vec![
        (
            "wrong password",
            pg.secret("wrong"),
            good_claim.clone(),
            "password authentication failed",
        ),
        (
            "unreachable host",
            unreachable,
            good_claim.clone(),
            "Connection refused",
        ),
        (
            "missing database",
            no_database,
            good_claim.clone(),
            "does not exist",
        ),
        (
            "unwritable claim",
            pg.secret(PASSWORD),
            read_only.path.clone(),
            "Read-only file system",
        ),
        (
            "full disk",
            pg.secret(PASSWORD),
            full.path.clone(),
            "No space left on device",
        ),
    ];
    for (why, secret, claim, cause) in cases {
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let container = operator.job_container(&backup);
        let mounts = Mounts::default().claim(CLAIM, &claim);
        let run = run_container(&container, &secret, &mounts, &scratch);
        run.assert_failed_without_report(why);
        println!("postgres {why}: exit {:?}: {}", run.code, run.stderr.trim());
        assert!(
            run.stderr.contains("apprelease postgres backup failed"),
            "{why}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(cause),
            "{why}: the message tells why: {}",
            run.stderr
        );
        assert_nothing_partial(&claim);
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &claim, why);
    }
    drop(full);
    drop(read_only);

    // A pg_dump that "succeeds" without output, or with garbage, is no backup either.
    for (why, body, cause) in [
        ("empty dump", "exit 0", "the backup is empty"),
        (
            "unreadable dump",
            "for a in \"$@\"; do case \"$a\" in --file=*) echo garbage > \"${a#--file=}\";; esac; done",
            "not a readable pg_dump archive",
        ),
    ] {
        let fake = scratch.dir(&format!("fake-{}", why.replace(' ', "-")));
        let tool = fake.join("pg_dump");
        std::fs::write(&tool, format!("#!/bin/sh\n{body}\n")).unwrap();
        run_ok(Command::new("chmod").arg("+x").arg(&tool));
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let mut mounts = Mounts::default().claim(CLAIM, &good_claim);
        mounts.path_prefix.push(fake);
        let run = run_container(
            &operator.job_container(&backup),
            &pg.secret(PASSWORD),
            &mounts,
            &scratch,
        );
        run.assert_failed_without_report(why);
        assert!(run.stderr.contains(cause), "{why}: {}", run.stderr);
        println!("postgres {why}: exit {:?}: {}", run.code, run.stderr.trim());
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &good_claim, why);
    }
}

#[test]
fn postgres_restore_refuses_a_damaged_backup_and_leaves_the_database_alone() {
    let pg = Postgres::start();
    pg.seed(100);
    let scratch = Scratch::new("pg-corrupt");
    let claim = scratch.dir("claim");
    let mounts = Mounts::default().claim(CLAIM, &claim);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &pg.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);

    pg.psql("DELETE FROM orders WHERE id > 50");
    let damaged = pg.table_checksum("orders");
    // One flipped byte in the middle of the dump.
    let file = claim
        .join(NAMESPACE)
        .join(RELEASE)
        .join(format!("{}.pgdump", backup.name));
    flip_middle_byte(&file);

    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &pg.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded());
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert_eq!(
        pg.table_checksum("orders"),
        damaged,
        "the database was not touched"
    );
    let decision = operator.job_finished(&restore, &run);
    assert!(
        decision.actions.is_empty(),
        "a failed restore stops: {:?}",
        decision.actions
    );
    let ready = operator
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "RollbackFailed");
    assert!(ready.message.contains(&backup.name), "{}", ready.message);
    assert_eq!(
        operator.cluster.deployments["web"].replicas, 0,
        "targets stay at zero"
    );
    println!(
        "postgres damaged backup: restore refused: {}",
        run.stderr.trim()
    );
}

#[test]
fn postgres_restore_that_fails_midway_rolls_back_its_transaction() {
    // As most applications run: a role that owns its database and objects, not a superuser.
    let pg = Postgres::start();
    pg.psql_as(
        "postgres",
        PASSWORD,
        "postgres",
        &format!("CREATE ROLE app LOGIN PASSWORD 'app-pw'; ALTER DATABASE {DATABASE} OWNER TO app"),
    );
    pg.seed_as("app", "app-pw", 100);
    let mut secret = pg.secret("app-pw");
    secret.insert("PGUSER".into(), "app".into());
    let scratch = Scratch::new("pg-midway");
    let claim = scratch.dir("claim");
    let mounts = Mounts::default().claim(CLAIM, &claim);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(&operator.job_container(&backup), &secret, &mounts, &scratch);
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);

    // A statement late in the restore fails (a superuser's event trigger forbids creating
    // views), after the restore already dropped and re-created the tables: its transaction
    // undoes all of it.
    pg.psql_as(
        "app",
        "app-pw",
        DATABASE,
        "DELETE FROM orders WHERE id > 80; UPDATE customers SET name = 'changed after the backup';",
    );
    pg.psql(
        "CREATE FUNCTION no_views() RETURNS event_trigger LANGUAGE plpgsql AS $$
           BEGIN IF tg_tag = 'CREATE VIEW' THEN RAISE EXCEPTION 'views are forbidden today'; END IF; END $$;
         CREATE EVENT TRIGGER no_views ON ddl_command_end EXECUTE FUNCTION no_views();",
    );
    let before = (pg.table_checksum("customers"), pg.table_checksum("orders"));
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &secret,
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded(), "{}", run.stdout);
    assert!(
        run.stderr.contains("rolled back") && run.stderr.contains("views are forbidden"),
        "{}",
        run.stderr
    );
    let after = (pg.table_checksum("customers"), pg.table_checksum("orders"));
    assert_eq!(after, before, "a failed restore changes nothing");
    println!("postgres restore failing midway: database unchanged ({after:?})");

    // Without the obstacle, the same restore by the owning role succeeds.
    pg.psql("DROP EVENT TRIGGER no_views");
    let run = run_container(
        &operator.job_container(&restore),
        &secret,
        &mounts,
        &scratch,
    );
    run.assert_succeeded("restore as the owning role");
    assert_eq!(pg.psql("SELECT count(*) FROM orders").trim(), "100");
}

#[test]
fn postgres_backup_prunes_only_the_listed_backups_of_this_release_after_success() {
    let pg = Postgres::start();
    pg.seed(10);
    let scratch = Scratch::new("pg-prune");
    let claim = scratch.dir("claim");
    let dir = claim.join(NAMESPACE).join(RELEASE);
    std::fs::create_dir_all(&dir).unwrap();
    let other = claim.join(NAMESPACE).join("other-release");
    std::fs::create_dir_all(&other).unwrap();
    for f in [
        "shop-backup-7.pgdump",
        "shop-backup-7.pgdump.sha256",
        "shop-backup-70.pgdump",
        "keep.txt",
    ] {
        std::fs::write(dir.join(f), "old").unwrap();
    }
    std::fs::write(other.join("shop-backup-7.pgdump"), "someone else's").unwrap();
    // What a backup Job killed at its deadline leaves behind.
    std::fs::write(dir.join(".shop-backup-6.pgdump.partial"), "cut off").unwrap();
    std::fs::create_dir_all(dir.join(".shop-backup-6.pgdump.restore.work")).unwrap();
    let mounts = Mounts::default().claim(CLAIM, &claim);

    // A failing backup prunes nothing.
    let mut operator = Operator::new(preset());
    let mut backup = operator.until_job(JobKind::Backup);
    backup.prune = vec![
        "shop-backup-7".into(),
        "../other-release/shop-backup-7".into(),
    ];
    let run = run_container(
        &operator.job_container(&backup),
        &pg.secret("wrong"),
        &mounts,
        &scratch,
    );
    run.assert_failed_without_report("wrong password");
    assert!(
        dir.join("shop-backup-7.pgdump").exists(),
        "nothing pruned after a failure"
    );

    // A successful one prunes exactly the listed ids of this release's directory.
    let run = run_container(
        &operator.job_container(&backup),
        &pg.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    let mut left = files_under(&claim);
    left.sort();
    let name = format!("{}.pgdump", backup.name);
    let mut expected = vec![
        format!("shop/other-release/shop-backup-7.pgdump"),
        format!("shop/shop/{name}"),
        format!("shop/shop/{name}.sha256"),
        "shop/shop/keep.txt".to_string(),
        "shop/shop/shop-backup-70.pgdump".to_string(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    assert!(run.stderr.contains("not pruning"), "{}", run.stderr);
}
