//! A PostgreSQL server of the tests' own (Debian's `postgresql` package; run as the
//! `postgres` user when the tests run as root), its seed data and its row digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Scratch, free_port, is_root, require, run_ok};

pub const PASSWORD: &str = "s3cret pass'word";
pub const DATABASE: &str = "shop";

/// A PostgreSQL server of its own, on loopback, stopped on drop (even when the test fails).
pub struct Postgres {
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
    pub fn start() -> Self {
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
    pub fn secret(&self, password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("PGHOST".into(), "127.0.0.1".into()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
            ("PGPASSWORD".into(), password.into()),
            ("PGDATABASE".into(), DATABASE.into()),
        ])
    }

    pub fn psql_as(&self, user: &str, password: &str, db: &str, sql: &str) -> String {
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

    pub fn psql(&self, sql: &str) -> String {
        self.psql_as("postgres", PASSWORD, DATABASE, sql)
    }

    /// (id, md5 of the whole row) of every row of a table.
    pub fn rows(&self, table: &str) -> BTreeMap<i64, String> {
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

    pub fn table_checksum(&self, table: &str) -> String {
        self.psql(&format!(
            "SELECT count(*) || ':' || md5(string_agg(md5(t::text), ',' ORDER BY id)) FROM {table} t"
        ))
        .trim()
        .to_string()
    }

    /// What a failed upgrade may leave: rows deleted and changed, a view, a function and an
    /// enum value changed, a column, a table, a type, a domain and a function added by its
    /// migration, a sequence moved.
    pub fn damage(&self) {
        self.psql(
            "DELETE FROM orders WHERE id % 3 = 0; DELETE FROM customers WHERE id > 600 AND id NOT IN (SELECT customer FROM orders);
             UPDATE customers SET name = 'damaged', balance = 0 WHERE id % 7 = 0;
             ALTER TABLE customers ADD COLUMN migrated boolean DEFAULT true;
             CREATE TABLE added_by_migration (id int); INSERT INTO added_by_migration VALUES (1);
             CREATE TYPE added_mood AS ENUM ('ok'); CREATE DOMAIN added_positive AS int CHECK (VALUE > 0);
             CREATE FUNCTION added_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
             DROP FUNCTION tier_of(numeric); ALTER TYPE tier ADD VALUE 'gold';
             DROP VIEW rich; SELECT setval('invoice_numbers', 5000);",
        );
    }

    /// What [`Postgres::damage`] changed outside the tables is back as [`Postgres::seed`] left
    /// it. Takes a value of `invoice_numbers`.
    pub fn assert_schema_as_seeded(&self) {
        // What the migration added is gone, what it dropped is back.
        assert_eq!(
            self.psql(
                "SELECT count(*) FROM information_schema.columns WHERE column_name = 'migrated'"
            )
            .trim(),
            "0"
        );
        assert_eq!(
            self.psql("SELECT to_regclass('added_by_migration') IS NULL")
                .trim(),
            "t"
        );
        assert_eq!(
            self.psql("SELECT count(*) FROM rich").trim(),
            self.psql("SELECT count(*) FROM customers WHERE balance > 500")
                .trim()
        );
        assert_eq!(
            self.psql("SELECT nextval('invoice_numbers')").trim(),
            "1002"
        );
        // Types, domains and functions: as in the backup, not as the migration left them.
        assert_eq!(
            self.psql("SELECT to_regtype('added_mood') IS NULL AND to_regtype('added_positive') IS NULL AND to_regprocedure('added_fn()') IS NULL").trim(),
            "t"
        );
        assert_eq!(self.psql("SELECT tier_of(1000)").trim(), "paid");
        assert_eq!(
            self.psql("SELECT enum_range(NULL::tier)").trim(),
            "{free,paid}"
        );
    }

    pub fn seed(&self, rows: usize) {
        self.seed_as("postgres", PASSWORD, rows);
    }

    pub fn seed_as(&self, user: &str, password: &str, rows: usize) {
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
