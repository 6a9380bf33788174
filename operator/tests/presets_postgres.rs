//! The postgres preset's exact Job scripts against a real PostgreSQL server started here
//! (Debian's `postgresql` package; run as the `postgres` user when the tests run as root).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use apprelease_operator::api::BackupPreset;
use apprelease_operator::jobs::names::JobKind;
use support::*;

const PASSWORD: &str = "s3cret pass'word";
const DATABASE: &str = "shop";

/// A PostgreSQL server of its own, on loopback, stopped on drop (even when the test fails).
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _scratch: Scratch,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries (initdb, pg_ctl) are not installed: run `apt-get install -y postgresql`")
    })
}

/// Runs a server command as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    fn start() -> Self {
        let bin = pg_bin();
        require("psql", "postgresql-client");
        require("pg_dump", "postgresql-client");
        let scratch = Scratch::new("pg");
        let data = scratch.path.join("data");
        let pwfile = scratch.path.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&scratch.path),
            );
        }
        run_ok(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                ])
                .args(["--auth-host=scram-sha-256", "--no-sync"])
                .arg(format!("--pwfile={}", pwfile.display())),
        );
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
                scratch.path.display()
            );
            let out = as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-w", "-t", "60", "-l"])
                .arg(scratch.path.join("log"))
                .arg("start")
                .output()
                .unwrap();
            if out.status.success() {
                let pg = Self {
                    bin,
                    data,
                    port,
                    _scratch: scratch,
                };
                pg.psql_as(
                    "postgres",
                    PASSWORD,
                    "postgres",
                    &format!("CREATE DATABASE {DATABASE}"),
                );
                return pg;
            }
            last = std::fs::read_to_string(scratch.path.join("log")).unwrap_or_default();
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// The Secret a user would write for the preset.
    fn secret(&self, password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("PGHOST".into(), "127.0.0.1".into()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
            ("PGPASSWORD".into(), password.into()),
            ("PGDATABASE".into(), DATABASE.into()),
        ])
    }

    fn psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> String {
        run_ok(
            Command::new("psql")
                .env("PGPASSWORD", password)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    user,
                    "-d",
                    db,
                ])
                .args([
                    "--no-psqlrc",
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ]),
        )
    }

    fn psql(&self, sql: &str) -> String {
        self.psql_as("postgres", PASSWORD, DATABASE, sql)
    }

    /// (id, md5 of the whole row) of every row of a table.
    fn rows(&self, table: &str) -> BTreeMap<i64, String> {
        self.psql(&format!(
            "SELECT id, md5(t::text) FROM {table} t ORDER BY id"
        ))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, sum) = l.split_once('|').unwrap();
            (id.parse().unwrap(), sum.to_string())
        })
        .collect()
    }

    fn table_checksum(&self, table: &str) -> String {
        self.psql(&format!(
            "SELECT count(*) || ':' || md5(string_agg(md5(t::text), ',' ORDER BY id)) FROM {table} t"
        ))
        .trim()
        .to_string()
    }

    fn seed(&self, rows: usize) {
        self.seed_as("postgres", PASSWORD, rows);
    }

    fn seed_as(&self, user: &str, password: &str, rows: usize) {
        self.psql_as(user, password, DATABASE, &format!(
            "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text UNIQUE, \
               balance numeric(12,2), photo bytea, tags text[], born date, meta jsonb);
             CREATE TABLE orders (id bigserial PRIMARY KEY, customer bigint REFERENCES customers(id), \
               total numeric(12,2), note text);
             CREATE VIEW rich AS SELECT id, name FROM customers WHERE balance > 500;
             CREATE SEQUENCE invoice_numbers START 1000;
             INSERT INTO customers SELECT i, 'customer ' || i || ' ''quoted'' ünïcødé', 'c' || i || '@example.org', \
               (i * 7919 % 100000) / 100.0, decode(md5(i::text) || md5((i*3)::text), 'hex'), \
               ARRAY['a' || i, 'tab' || chr(9) || 'x'], date '1970-01-01' + i, \
               jsonb_build_object('n', i, 'nested', jsonb_build_object('sq', i * i)) \
               FROM generate_series(1, {rows}) i;
             INSERT INTO orders (customer, total, note) SELECT 1 + (i % {rows}), i / 3.0, \
               CASE WHEN i % 10 = 0 THEN NULL ELSE E'line\\nbreak ' || i END FROM generate_series(1, {rows}) i;
             SELECT nextval('invoice_numbers'), nextval('invoice_numbers');
             CREATE TYPE tier AS ENUM ('free', 'paid');
             CREATE FUNCTION tier_of(balance numeric) RETURNS tier LANGUAGE sql IMMUTABLE
               AS $$ SELECT CASE WHEN balance > 500 THEN 'paid'::tier ELSE 'free'::tier END $$;"
        ));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

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

    // The failed upgrade's damage: rows deleted and changed, a table dropped, a column and a
    // table added by a migration.
    pg.psql(
        "DELETE FROM orders WHERE id % 3 = 0; DELETE FROM customers WHERE id > 600 AND id NOT IN (SELECT customer FROM orders);
         UPDATE customers SET name = 'damaged', balance = 0 WHERE id % 7 = 0;
         ALTER TABLE customers ADD COLUMN migrated boolean DEFAULT true;
         CREATE TABLE added_by_migration (id int); INSERT INTO added_by_migration VALUES (1);
         CREATE TYPE added_mood AS ENUM ('ok'); CREATE DOMAIN added_positive AS int CHECK (VALUE > 0);
         CREATE FUNCTION added_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
         DROP FUNCTION tier_of(numeric); ALTER TYPE tier ADD VALUE 'gold';
         DROP VIEW rich; SELECT setval('invoice_numbers', 5000);",
    );
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
    let lost = before_customers
        .keys()
        .filter(|id| !after_customers.contains_key(id))
        .count()
        + before_orders
            .keys()
            .filter(|id| !after_orders.contains_key(id))
            .count();
    let changed = before_customers
        .iter()
        .filter(|(id, sum)| after_customers.get(id).is_some_and(|s| s != *sum))
        .count()
        + before_orders
            .iter()
            .filter(|(id, sum)| after_orders.get(id).is_some_and(|s| s != *sum))
            .count();
    let compared = before_customers.len() + before_orders.len();
    let after_sums = (pg.table_checksum("customers"), pg.table_checksum("orders"));
    println!(
        "postgres round trip{}: {compared} rows compared ({} customers, {} orders), {lost} lost, {changed} changed, {} extra; checksums before {before_sums:?} after {after_sums:?}",
        if busybox { " (busybox)" } else { "" },
        before_customers.len(),
        before_orders.len(),
        (after_customers.len() + after_orders.len()).saturating_sub(compared - lost)
    );
    assert_eq!(lost, 0);
    assert_eq!(changed, 0);
    assert_eq!(after_customers, before_customers);
    assert_eq!(after_orders, before_orders);
    assert_eq!(after_sums, before_sums);
    // What the migration added is gone, what it dropped is back.
    assert_eq!(
        pg.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'migrated'")
            .trim(),
        "0"
    );
    assert_eq!(
        pg.psql("SELECT to_regclass('added_by_migration') IS NULL")
            .trim(),
        "t"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM rich").trim(),
        pg.psql("SELECT count(*) FROM customers WHERE balance > 500")
            .trim()
    );
    assert_eq!(pg.psql("SELECT nextval('invoice_numbers')").trim(), "1002");
    // Types, domains and functions: as in the backup, not as the migration left them.
    assert_eq!(
        pg.psql("SELECT to_regtype('added_mood') IS NULL AND to_regtype('added_positive') IS NULL AND to_regprocedure('added_fn()') IS NULL").trim(),
        "t"
    );
    assert_eq!(pg.psql("SELECT tier_of(1000)").trim(), "paid");
    assert_eq!(
        pg.psql("SELECT enum_range(NULL::tier)").trim(),
        "{free,paid}"
    );
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
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

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
