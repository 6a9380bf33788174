//! The redis preset's exact Job scripts against a real Redis server started here (Debian's
//! `redis-server` package, which also provides the redis-server the restore script loads the
//! snapshot into).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apprelease_operator::api::BackupPreset;
use apprelease_operator::jobs::names::JobKind;
use support::*;

const PASSWORD: &str = "redis \"pass\" \\word";

/// A Redis server of its own, on loopback, with a password, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _scratch: Scratch,
}

fn cli(port: u16, db: u32, args: &[&[u8]]) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let output = Command::new("redis-cli")
        .env("REDISCLI_AUTH", PASSWORD)
        .args([
            "--no-auth-warning",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-n", &db.to_string()])
        .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    output.status.success().then_some(output.stdout)
}

impl Redis {
    fn start() -> Self {
        let server = require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let scratch = Scratch::new("redis");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--requirepass",
                    PASSWORD,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--enable-debug-command", "local", "--databases", "16"])
                .arg("--dir")
                .arg(&scratch.path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let start = std::time::Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: try another
                }
                if cli(port, 0, &[b"PING"]).is_some_and(|o| o.starts_with(b"PONG")) {
                    return Redis {
                        child,
                        port,
                        _scratch: scratch,
                    };
                }
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("redis-server did not start");
    }

    fn cmd(&self, db: u32, args: &[&[u8]]) -> Vec<u8> {
        cli(self.port, db, args).unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    fn secret(&self, password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("REDIS_HOST".into(), "127.0.0.1".into()),
            ("REDIS_PORT".into(), self.port.to_string()),
            ("REDISCLI_AUTH".into(), password.into()),
        ])
    }

    fn keys(&self, db: u32) -> Vec<Vec<u8>> {
        let out = self.cmd(db, &[b"--scan"]);
        let mut keys: Vec<Vec<u8>> = out
            .split(|b| *b == b'\n')
            .filter(|k| !k.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        keys.sort();
        keys
    }

    /// key → (digest of the value, has a TTL) for every key of `db`.
    fn dataset(&self, db: u32) -> BTreeMap<Vec<u8>, (String, bool)> {
        let keys = self.keys(db);
        if keys.is_empty() {
            return BTreeMap::new();
        }
        let mut args: Vec<&[u8]> = vec![b"DEBUG", b"DIGEST-VALUE"];
        args.extend(keys.iter().map(Vec::as_slice));
        let digests = String::from_utf8(self.cmd(db, &args)).unwrap();
        let digests: Vec<&str> = digests.lines().collect();
        assert_eq!(digests.len(), keys.len());
        let script =
            b"local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('PTTL', k) end return r";
        let count = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", script, count.as_bytes()];
        args.extend(keys.iter().map(Vec::as_slice));
        let ttls = String::from_utf8(self.cmd(db, &args)).unwrap();
        let ttls: Vec<i64> = ttls.lines().map(|l| l.trim().parse().unwrap()).collect();
        keys.into_iter()
            .zip(digests)
            .zip(ttls)
            .map(|((k, d), t)| (k, (d.to_string(), t > 0)))
            .collect()
    }

    /// Strings (text and binary), hashes, lists, sets, sorted sets, streams; some with TTLs,
    /// some with awkward names; in db 0 and db 3.
    fn seed(&self, keys: usize) {
        let mut commands = String::new();
        for i in 0..keys {
            let db_keys = match i % 6 {
                0 => format!("SET \"user:{i}\" \"name {i} \\\"quoted\\\" \\\\ back\\xffbin\"\n"),
                1 => format!("HSET \"profile:{i}\" name \"n{i}\" age {i} bio \"line\\nbreak\"\n"),
                2 => format!("RPUSH \"list:{i}\" a{i} b{i} c{i}\n"),
                3 => format!("SADD \"set:{i}\" x{i} y{i} z{i}\n"),
                4 => format!("ZADD \"zset:{i}\" {i} m{i} {} n{i}\n", i * 2),
                _ => format!("SET \"session with space {i}\" tok{i} EX 86400\n"),
            };
            commands.push_str(&db_keys);
        }
        commands.push_str("SET \"we\\\"ird\\\\key\\x01\" v\nXADD stream * field value\n");
        self.pipe(0, &commands);
        let mut db3 = String::new();
        for i in 0..keys / 10 {
            db3.push_str(&format!("SET cache:{i} {i} PX 7200000\n"));
        }
        self.pipe(3, &db3);
    }

    fn pipe(&self, db: u32, commands: &str) {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .env("REDISCLI_AUTH", PASSWORD)
            .args([
                "--no-auth-warning",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-n", &db.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("ERR"), "{text}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

    // Damage: half the keys deleted, some changed, new ones added, a whole db flushed.
    let keys = redis.keys(0);
    let mut damage = String::new();
    for (i, k) in keys.iter().enumerate() {
        let k = String::from_utf8_lossy(k)
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        if i % 2 == 0 {
            damage.push_str(&format!("DEL \"{k}\"\n"));
        } else if i % 5 == 1 {
            damage.push_str(&format!("RENAME \"{k}\" \"{k}:renamed\"\n"));
        }
    }
    for i in 0..50 {
        damage.push_str(&format!("SET added:{i} {i}\n"));
    }
    redis.pipe(0, &damage);
    redis.cmd(3, &[b"FLUSHDB"]);
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
    let mut compared = 0;
    let mut lost = 0;
    let mut changed = 0;
    for (before, after) in [(&before0, &after0), (&before3, &after3)] {
        for (key, value) in before {
            compared += 1;
            match after.get(key) {
                None => lost += 1,
                Some(v) if v != value => changed += 1,
                Some(_) => {}
            }
        }
    }
    let extra = after0.len() + after3.len() + lost - compared;
    let ttls = after0
        .values()
        .chain(after3.values())
        .filter(|(_, t)| *t)
        .count();
    println!(
        "redis round trip{}: {compared} keys compared (db0 {}, db3 {}), {lost} lost, {changed} changed, {extra} extra; {ttls} keys kept their TTL",
        if busybox { " (busybox, ACL user)" } else { "" },
        before0.len(),
        before3.len()
    );
    assert_eq!((lost, changed, extra), (0, 0, 0));
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
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
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
