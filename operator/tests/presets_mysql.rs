//! The mysql preset's exact Job scripts against a real MariaDB server started here (Debian's
//! `mariadb-server` package).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apprelease_operator::api::BackupPreset;
use apprelease_operator::jobs::names::JobKind;
use support::*;

const PASSWORD: &str = "app pass\"word'#";
const DATABASE: &str = "shop";

/// A MariaDB server of its own, on loopback, stopped on drop (even when the test fails).
struct Mariadb {
    child: Child,
    port: u16,
    socket: PathBuf,
    scratch: Scratch,
}

/// Creates the data directory's system tables, with a temporary directory of this server's
/// own: the bootstrap server failed once in CI when a temporary table it had put in the
/// shared /tmp was gone ("Could not remove temporary table … error: 2"). A second try in a
/// fresh directory is cheap, and a final failure shows the bootstrap server's output.
fn install_system_tables(
    install: &std::path::Path,
    data: &std::path::Path,
    tmp: &std::path::Path,
    user: &str,
) {
    let mut last = String::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(data);
        std::fs::create_dir_all(tmp).unwrap();
        let output = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--user={user}"))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", install.display()));
        if output.status.success() {
            return;
        }
        last = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    panic!("mariadb-install-db failed 3 times; last output:\n{last}");
}

impl Mariadb {
    fn start() -> Self {
        let server = require("mariadbd", "mariadb-server");
        let install = require("mariadb-install-db", "mariadb-server");
        require("mariadb", "mariadb-client");
        let scratch = Scratch::new("mariadb");
        let data = scratch.path.join("data");
        let user = if is_root() {
            "root".to_string()
        } else {
            whoami()
        };
        let tmp = scratch.path.join("tmp");
        install_system_tables(&install, &data, &tmp, &user);
        let socket = scratch.path.join("mysqld.sock");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = scratch.path.join("error.log");
            let child = Command::new(&server)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", scratch.path.join("pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!("--port={port}"))
                .arg(format!("--user={user}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--skip-log-bin",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let ready = || {
                Command::new("mariadb")
                    .arg("--no-defaults")
                    .arg(format!("--socket={}", socket.display()))
                    .args(["-uroot", "-e", "SELECT 1"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if let Some(child) = await_server(child, Duration::from_secs(60), ready) {
                let db = Self {
                    child,
                    port,
                    socket,
                    scratch,
                };
                db.root(&format!(
                    "CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4;
                     CREATE USER 'app'@'%' IDENTIFIED BY '{}';
                     GRANT ALL ON {DATABASE}.* TO 'app'@'%';",
                    PASSWORD.replace('\'', "''")
                ));
                return db;
            }
            last = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("MariaDB did not start: {last}");
    }

    fn root(&self, sql: &str) -> String {
        run_ok(
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "--batch", "--skip-column-names", "-e", sql]),
        )
    }

    /// As the application's user, over TCP: what the application (and the preset) does.
    fn sql(&self, sql: &str) -> String {
        run_ok(
            Command::new("mariadb")
                .arg("--no-defaults")
                .env("MYSQL_PWD", PASSWORD)
                .args(["-h", "127.0.0.1", "-P", &self.port.to_string(), "-u", "app"])
                .args(["--batch", "--skip-column-names", DATABASE, "-e", sql]),
        )
    }

    fn secret(&self, password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("MYSQL_HOST".into(), "127.0.0.1".into()),
            ("MYSQL_TCP_PORT".into(), self.port.to_string()),
            ("MYSQL_USER".into(), "app".into()),
            ("MYSQL_PWD".into(), password.into()),
            ("MYSQL_DATABASE".into(), DATABASE.into()),
        ])
    }

    /// id → md5 of the whole row.
    fn rows(&self, table: &str, columns: &str) -> BTreeMap<i64, String> {
        self.sql(&format!(
            "SELECT id, MD5(CONCAT_WS('|', {columns})) FROM {table} ORDER BY id"
        ))
        .lines()
        .map(|l| {
            let (id, sum) = l.split_once('\t').unwrap();
            (id.parse().unwrap(), sum.to_string())
        })
        .collect()
    }

    fn checksum(&self, table: &str) -> String {
        self.sql(&format!("CHECKSUM TABLE {table} EXTENDED"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    }

    fn seed(&self, rows: usize) {
        self.sql(&format!(
            "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, \
               balance DECIMAL(12,2), photo BLOB, born DATE, note TEXT) ENGINE=InnoDB;
             CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer BIGINT NOT NULL, \
               total DECIMAL(12,2), FOREIGN KEY (customer) REFERENCES customers(id)) ENGINE=InnoDB;
             CREATE VIEW rich AS SELECT id, name FROM customers WHERE balance > 500;
             INSERT INTO customers \
               SELECT seq, CONCAT('customer ', seq, ' \\'quoted\\' ünïcødé'), (seq * 7919 % 100000) / 100, \
                 UNHEX(CONCAT(MD5(seq), MD5(seq * 3))), DATE_ADD('1970-01-01', INTERVAL seq DAY), \
                 IF(seq % 10 = 0, NULL, CONCAT('line\\nbreak\\ttab ', seq)) \
               FROM seq_1_to_{rows};
             INSERT INTO orders (customer, total) SELECT 1 + (seq % {rows}), seq / 3 FROM seq_1_to_{rows};
             CREATE FUNCTION tier_of(balance DECIMAL(12,2)) RETURNS VARCHAR(10) DETERMINISTIC \
               RETURN IF(balance > 500, 'paid', 'free');"
        ));
    }
}

fn whoami() -> String {
    run_ok(&mut Command::new("whoami")).trim().to_string()
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.scratch;
    }
}

fn preset() -> BackupPreset {
    BackupPreset::Mysql(database_preset(None))
}

const CUSTOMER_COLUMNS: &str = "id, name, balance, HEX(photo), born, IFNULL(note, '<null>')";
const ORDER_COLUMNS: &str = "id, customer, total";

#[test]
fn mysql_backup_damage_restore_round_trip_loses_nothing() {
    let db = Mariadb::start();
    db.seed(1000);
    let before_customers = db.rows("customers", CUSTOMER_COLUMNS);
    let before_orders = db.rows("orders", ORDER_COLUMNS);
    let before_sums = (db.checksum("customers"), db.checksum("orders"));
    assert_eq!(before_customers.len(), 1000);

    let scratch = Scratch::new("mysql-claim");
    let claim = scratch.dir("claim");
    let mounts = Mounts::default().claim(CLAIM, &claim);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &db.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    check_recorded(&operator, &run, &claim, &format!("{}.sql.gz", backup.name));

    db.sql(
        "DELETE FROM orders WHERE id % 3 = 0;
         UPDATE customers SET name = 'damaged', balance = 0 WHERE id % 7 = 0;
         ALTER TABLE customers ADD COLUMN migrated BOOLEAN DEFAULT TRUE;
         CREATE TABLE added_by_migration (id INT); INSERT INTO added_by_migration VALUES (1);
         CREATE PROCEDURE added_proc() SELECT 1;
         DROP FUNCTION tier_of;
         DROP VIEW rich;",
    );
    assert_ne!(db.rows("customers", CUSTOMER_COLUMNS), before_customers);

    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &db.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("restore");
    operator.job_finished(&restore, &run);

    let after_customers = db.rows("customers", CUSTOMER_COLUMNS);
    let after_orders = db.rows("orders", ORDER_COLUMNS);
    let compared = before_customers.len() + before_orders.len();
    let lost = before_customers
        .keys()
        .filter(|k| !after_customers.contains_key(k))
        .count()
        + before_orders
            .keys()
            .filter(|k| !after_orders.contains_key(k))
            .count();
    let changed = before_customers
        .iter()
        .filter(|(k, v)| after_customers.get(k).is_some_and(|a| a != *v))
        .count()
        + before_orders
            .iter()
            .filter(|(k, v)| after_orders.get(k).is_some_and(|a| a != *v))
            .count();
    let after_sums = (db.checksum("customers"), db.checksum("orders"));
    println!(
        "mysql round trip: {compared} rows compared ({} customers, {} orders), {lost} lost, {changed} changed; CHECKSUM TABLE before {before_sums:?} after {after_sums:?}",
        before_customers.len(),
        before_orders.len()
    );
    assert_eq!((lost, changed), (0, 0));
    assert_eq!(after_customers, before_customers);
    assert_eq!(after_orders, before_orders);
    assert_eq!(after_sums, before_sums);
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'added_by_migration'").trim(),
        "0"
    );
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND column_name = 'migrated'").trim(),
        "0"
    );
    assert_eq!(
        db.sql("SELECT GROUP_CONCAT(routine_name) FROM information_schema.routines WHERE routine_schema = DATABASE()").trim(),
        "tier_of",
        "routines as in the backup"
    );
    assert_eq!(db.sql("SELECT tier_of(1000)").trim(), "paid");
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM rich").trim(),
        db.sql("SELECT COUNT(*) FROM customers WHERE balance > 500")
            .trim()
    );
}

#[test]
fn mysql_backup_failures_write_no_report_and_record_nothing() {
    let db = Mariadb::start();
    db.seed(50);
    db.sql(
        "CREATE TABLE blobs (id INT PRIMARY KEY, data TEXT);
         INSERT INTO blobs SELECT seq, (SELECT GROUP_CONCAT(MD5(RAND()) SEPARATOR '') FROM seq_1_to_32) FROM seq_1_to_2000;",
    );
    let scratch = Scratch::new("mysql-fail");
    let good_claim = scratch.dir("claim");
    let full = TinyFs::mount(&scratch.path.join("full"), "size=64k");
    let read_only = TinyFs::mount(&scratch.path.join("ro"), "ro,size=64k");
    let mut unreachable = db.secret(PASSWORD);
    unreachable.insert("MYSQL_TCP_PORT".into(), free_port().to_string());
    let cases: Vec<(&str, BTreeMap<String, String>, PathBuf, &str)> = vec![
        (
            "wrong password",
            db.secret("wrong"),
            good_claim.clone(),
            "Access denied",
        ),
        (
            "unreachable host",
            unreachable,
            good_claim.clone(),
            "Can't connect",
        ),
        (
            "unwritable claim",
            db.secret(PASSWORD),
            read_only.path.clone(),
            "Read-only file system",
        ),
        (
            "full disk",
            db.secret(PASSWORD),
            full.path.clone(),
            "errno 28",
        ),
    ];
    for (why, secret, claim, cause) in cases {
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let mounts = Mounts::default().claim(CLAIM, &claim);
        let run = run_container(&operator.job_container(&backup), &secret, &mounts, &scratch);
        run.assert_failed_without_report(why);
        println!("mysql {why}: exit {:?}: {}", run.code, run.stderr.trim());
        assert!(
            run.stderr.contains("apprelease mysql backup failed") && run.stderr.contains(cause),
            "{why}: {}",
            run.stderr
        );
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &claim, why);
    }
    drop(full);
    drop(read_only);

    // A dump tool that exits 0 with nothing, or with a cut-off dump, is no backup either.
    for (why, body, cause) in [
        ("empty dump", "exit 0", "wrote nothing"),
        (
            "cut-off dump",
            "for a in \"$@\"; do case \"$a\" in --result-file=*) printf -- '-- MariaDB dump\\nCREATE TABLE t (id int);\\n' > \"${a#--result-file=}\";; esac; done",
            "incomplete",
        ),
    ] {
        let fake = scratch.dir(&format!("fake-{}", why.replace(' ', "-")));
        let tool = fake.join("mariadb-dump");
        std::fs::write(&tool, format!("#!/bin/sh\n{body}\n")).unwrap();
        run_ok(Command::new("chmod").arg("+x").arg(&tool));
        let mut operator = Operator::new(preset());
        let backup = operator.until_job(JobKind::Backup);
        let mut mounts = Mounts::default().claim(CLAIM, &good_claim);
        mounts.path_prefix.push(fake);
        let run = run_container(
            &operator.job_container(&backup),
            &db.secret(PASSWORD),
            &mounts,
            &scratch,
        );
        run.assert_failed_without_report(why);
        assert!(run.stderr.contains(cause), "{why}: {}", run.stderr);
        println!("mysql {why}: exit {:?}: {}", run.code, run.stderr.trim());
        assert_failed_backup_left_nothing(&mut operator, &backup, &run, &good_claim, why);
    }
}

#[test]
fn mysql_restore_refuses_a_damaged_backup_and_leaves_the_database_alone() {
    let db = Mariadb::start();
    db.seed(100);
    let scratch = Scratch::new("mysql-corrupt");
    let claim = scratch.dir("claim");
    let mounts = Mounts::default().claim(CLAIM, &claim);
    let mut operator = Operator::new(preset());
    let backup = operator.until_job(JobKind::Backup);
    let run = run_container(
        &operator.job_container(&backup),
        &db.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    run.assert_succeeded("backup");
    operator.job_finished(&backup, &run);
    db.sql("DELETE FROM orders WHERE id > 50");
    let damaged = db.checksum("orders");
    let file = claim
        .join(NAMESPACE)
        .join(RELEASE)
        .join(format!("{}.sql.gz", backup.name));
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 100);
    std::fs::write(&file, bytes).unwrap();
    let restore = operator.until_job(JobKind::Restore);
    let run = run_container(
        &operator.job_container(&restore),
        &db.secret(PASSWORD),
        &mounts,
        &scratch,
    );
    assert!(!run.succeeded());
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert_eq!(
        db.checksum("orders"),
        damaged,
        "the database was not touched"
    );
    println!(
        "mysql truncated backup: restore refused: {}",
        run.stderr.trim()
    );
}
