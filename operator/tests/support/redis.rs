//! A Redis server of the tests' own (Debian's `redis-server` package), its seed data and
//! a digest of every key.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Scratch, await_server, free_port, require};

pub const PASSWORD: &str = "redis \"pass\" \\word";

/// What a key is: its type, a digest of its value, whether it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub kind: String,
    pub digest: String,
    pub ttl: bool,
}

/// A Redis server of its own, on loopback, with a password, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
    _scratch: Scratch,
}

/// redis-cli against the test server's database `db`, as the default user.
fn redis_cli(port: u16, db: u32) -> Command {
    let mut command = Command::new("redis-cli");
    command
        .env("REDISCLI_AUTH", PASSWORD)
        .args([
            "--no-auth-warning",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-n", &db.to_string()]);
    command
}

fn cli(port: u16, db: u32, args: &[&[u8]]) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let output = redis_cli(port, db)
        .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    output.status.success().then_some(output.stdout)
}

impl Redis {
    pub fn start() -> Self {
        let server = require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let scratch = Scratch::new("redis");
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(&server)
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
            let ready = || cli(port, 0, &[b"PING"]).is_some_and(|o| o.starts_with(b"PONG"));
            // None: the port was taken, try another.
            if let Some(child) = await_server(child, Duration::from_secs(30), ready) {
                return Redis {
                    child,
                    port,
                    _scratch: scratch,
                };
            }
        }
        panic!("redis-server did not start");
    }

    pub fn cmd(&self, db: u32, args: &[&[u8]]) -> Vec<u8> {
        cli(self.port, db, args).unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    pub fn secret(&self, password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("REDIS_HOST".into(), "127.0.0.1".into()),
            ("REDIS_PORT".into(), self.port.to_string()),
            ("REDISCLI_AUTH".into(), password.into()),
        ])
    }

    pub fn keys(&self, db: u32) -> Vec<Vec<u8>> {
        let out = self.cmd(db, &[b"--scan"]);
        let mut keys: Vec<Vec<u8>> = out
            .split(|b| *b == b'\n')
            .filter(|k| !k.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        keys.sort();
        keys
    }

    /// key → (type, digest of the value, has a TTL) for every key of `db`.
    pub fn dataset(&self, db: u32) -> BTreeMap<Vec<u8>, Key> {
        let keys = self.keys(db);
        if keys.is_empty() {
            return BTreeMap::new();
        }
        let mut args: Vec<&[u8]> = vec![b"DEBUG", b"DIGEST-VALUE"];
        args.extend(keys.iter().map(Vec::as_slice));
        let digests = String::from_utf8(self.cmd(db, &args)).unwrap();
        let digests: Vec<&str> = digests.lines().collect();
        assert_eq!(digests.len(), keys.len());
        // The digest alone does not tell a list from a set of the same members.
        let script = b"local r = {} for i, k in ipairs(KEYS) do \
            r[i] = redis.call('TYPE', k)['ok'] .. ' ' .. redis.call('PTTL', k) end return r";
        let count = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", script, count.as_bytes()];
        args.extend(keys.iter().map(Vec::as_slice));
        let kinds = String::from_utf8(self.cmd(db, &args)).unwrap();
        let kinds: Vec<(String, bool)> = kinds
            .lines()
            .map(|l| {
                let (kind, ttl) = l.trim().split_once(' ').unwrap();
                (kind.to_string(), ttl.parse::<i64>().unwrap() > 0)
            })
            .collect();
        assert_eq!(kinds.len(), keys.len());
        keys.into_iter()
            .zip(digests)
            .zip(kinds)
            .map(|((k, digest), (kind, ttl))| {
                let digest = digest.to_string();
                (k, Key { kind, digest, ttl })
            })
            .collect()
    }

    /// Strings (text and binary), hashes, lists, sets, sorted sets, streams; some with TTLs,
    /// some with awkward names; in db 0 and db 3.
    pub fn seed(&self, keys: usize) {
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

    /// What a failed upgrade may leave: half the keys of db 0 deleted, some renamed, some
    /// overwritten (type and TTL too), new ones added, db 3 flushed.
    pub fn damage(&self) {
        let keys = self.keys(0);
        let mut damage = String::new();
        for (i, k) in keys.iter().enumerate() {
            let k = String::from_utf8_lossy(k)
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            if i % 2 == 0 {
                damage.push_str(&format!("DEL \"{k}\"\n"));
            } else if i % 5 == 1 {
                damage.push_str(&format!("RENAME \"{k}\" \"{k}:renamed\"\n"));
            } else if i % 5 == 3 {
                // Another value, another type, no TTL.
                damage.push_str(&format!("SET \"{k}\" changed\n"));
            }
        }
        for i in 0..50 {
            damage.push_str(&format!("SET added:{i} {i}\n"));
        }
        self.pipe(0, &damage);
        self.cmd(3, &[b"FLUSHDB"]);
    }

    pub fn pipe(&self, db: u32, commands: &str) {
        use std::io::Write;
        let mut child = redis_cli(self.port, db)
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
