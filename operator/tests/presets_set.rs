//! A backup set of three presets — `db` PostgreSQL, `cache` Redis, `uploads` a volume —
//! against real servers started here. The planner decides; each component's Job, as
//! `jobs::build` makes it, runs its exact script on this machine; the outcomes go back to the
//! planner. A set's backup Jobs run at the same time (threads), as they do in a cluster; its
//! restore Jobs one after the other, as the planner asks for them.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use apprelease_operator::api::conditions::Condition;
use apprelease_operator::api::*;
use apprelease_operator::jobs::names::{JobKind, component_job_name};
use apprelease_operator::plan::{Action, Decision, JobRequest};
use support::*;

const COMPONENTS: [&str; 3] = ["db", "cache", "uploads"];
/// The cache's connection Secret (the database's is `SECRET`).
const CACHE_SECRET: &str = "shop-cache";
/// The uploads volume the `uploads` component archives.
const DATA_CLAIM: &str = "shop-data";
/// The cache's own storage claim, in the variant where db and cache use different claims.
const CACHE_CLAIM: &str = "shop-cache-backups";

/// `db`, `cache` and `uploads`, all on the storage claim `CLAIM` except the cache's on
/// `cache_claim`.
fn backup_set(cache_claim: &str, keep_last: i32) -> BackupSpec {
    let database = |secret: &str, claim: &str| DatabasePreset {
        connection_secret: secret.into(),
        storage: BackupStorage { pvc: claim.into() },
        image: None,
        security_context: None,
    };
    let component = |name: &str, preset| BackupComponent {
        name: name.into(),
        template: None,
        preset: Some(preset),
        restore: None,
    };
    let uploads = VolumePreset {
        claim: DATA_CLAIM.into(),
        storage: BackupStorage { pvc: CLAIM.into() },
        image: None,
        security_context: None,
    };
    BackupSpec {
        template: None,
        preset: None,
        components: vec![
            component("db", BackupPreset::Postgres(database(SECRET, CLAIM))),
            component(
                "cache",
                BackupPreset::Redis(database(CACHE_SECRET, cache_claim)),
            ),
            component("uploads", BackupPreset::Volume(uploads)),
        ],
        keep_last,
        max_age: None,
        timeout: "10m".into(),
    }
}

fn operator(cache_claim: &str, keep_last: i32) -> Operator {
    Operator::with_release(release_with(backup_set(cache_claim, keep_last)))
}

/// Everything the three stores hold, each entry by its whole value.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// (table, id) → digest of the whole row.
    rows: BTreeMap<(String, i64), String>,
    /// `last_value:is_called` of each sequence.
    sequences: String,
    /// (database, key) → type, value digest, TTL.
    keys: BTreeMap<(u32, Vec<u8>), redis::Key>,
    /// path → (kind, mode, sha256).
    files: BTreeMap<String, (char, u32, String)>,
}

impl Snapshot {
    /// Per component, in `COMPONENTS` order.
    fn diffs(&self, after: &Snapshot) -> [Diff; 3] {
        [
            Diff::of(&self.rows, &after.rows),
            Diff::of(&self.keys, &after.keys),
            Diff::of(&self.files, &after.files),
        ]
    }
}

/// One Job run here.
struct Ran {
    request: JobRequest,
    component: String,
    run: ScriptRun,
    seconds: f64,
}

/// The set's three stores, each real, and the storage claims as directories.
struct Stores {
    pg: postgres::Postgres,
    redis: redis::Redis,
    cache_claim: String,
    /// The uploads volume.
    uploads: PathBuf,
    /// Storage claim → directory.
    claims: BTreeMap<String, PathBuf>,
    scratch: Scratch,
}

impl Stores {
    fn start(cache_claim: &str) -> Self {
        require("tar", "tar");
        let scratch = Scratch::new("set");
        let claims = [CLAIM, cache_claim]
            .into_iter()
            .map(|c| (c.to_string(), scratch.dir(c)))
            .collect();
        Self {
            pg: postgres::Postgres::start(),
            redis: redis::Redis::start(),
            cache_claim: cache_claim.into(),
            uploads: scratch.dir("uploads"),
            claims,
            scratch,
        }
    }

    fn seed(&self, rows: usize, keys: usize, files: usize) {
        self.pg.seed(rows);
        self.redis.seed(keys);
        files::seed(&self.uploads, files);
    }

    /// What a failed upgrade may leave in all three.
    fn damage(&self) {
        self.pg.damage();
        self.redis.damage();
        files::damage(&self.uploads);
    }

    fn snapshot(&self) -> Snapshot {
        let mut rows = BTreeMap::new();
        for table in ["customers", "orders"] {
            for (id, digest) in self.pg.rows(table) {
                rows.insert((table.to_string(), id), digest);
            }
        }
        let sequences = self.pg.psql(
            "SELECT last_value || ':' || is_called FROM invoice_numbers
             UNION ALL SELECT last_value || ':' || is_called FROM orders_id_seq",
        );
        let mut keys = BTreeMap::new();
        for db in [0, 3] {
            for (key, what) in self.redis.dataset(db) {
                keys.insert((db, key), what);
            }
        }
        Snapshot {
            rows,
            sequences,
            keys,
            files: files::manifest(&self.uploads),
        }
    }

    /// The Secret a component's Job reads; an unreachable one names a closed port.
    fn secret(&self, component: &str, unreachable: bool) -> BTreeMap<String, String> {
        let (mut secret, port) = match component {
            "db" => (self.pg.secret(postgres::PASSWORD), "PGPORT"),
            "cache" => (self.redis.secret(redis::PASSWORD), "REDIS_PORT"),
            _ => return BTreeMap::new(),
        };
        if unreachable {
            secret.insert(port.into(), free_port().to_string());
        }
        secret
    }

    fn mounts(&self, component: &str) -> Mounts {
        let mounts = self
            .claims
            .iter()
            .fold(Mounts::default(), |m, (claim, dir)| m.claim(claim, dir))
            .claim(DATA_CLAIM, &self.uploads);
        match component {
            "cache" => mounts.secret(CACHE_SECRET),
            _ => mounts,
        }
    }

    /// Runs the Jobs of `requests` here, all at the same time; the component named by
    /// `unreachable` cannot reach its server.
    fn run(
        &self,
        operator: &Operator,
        requests: &[JobRequest],
        unreachable: Option<&str>,
    ) -> Vec<Ran> {
        let jobs: Vec<(&JobRequest, JobContainer)> = requests
            .iter()
            .map(|r| (r, operator.job_container(r)))
            .collect();
        std::thread::scope(|s| {
            let running: Vec<_> = jobs
                .iter()
                .map(|(request, job)| {
                    s.spawn(move || {
                        let component = request.component.clone().expect("a set's Job");
                        let secret =
                            self.secret(&component, unreachable == Some(component.as_str()));
                        let mounts = self.mounts(&component);
                        let start = Instant::now();
                        let run = run_container(job, &secret, &mounts, &self.scratch);
                        Ran {
                            request: (*request).clone(),
                            component,
                            run,
                            seconds: start.elapsed().as_secs_f64(),
                        }
                    })
                })
                .collect();
            running.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    /// Runs one Job here.
    fn run_one(&self, operator: &Operator, request: &JobRequest) -> Ran {
        self.run(operator, std::slice::from_ref(request), None)
            .remove(0)
    }

    /// The file a recorded component's backup is in, on its claim.
    fn file(&self, component: &ComponentBackup) -> PathBuf {
        let location = component.location.as_deref().expect("a location");
        let (claim, path) = location
            .strip_prefix("pvc://")
            .and_then(|l| l.split_once('/'))
            .unwrap_or_else(|| panic!("{location} is no claim path"));
        self.claims[claim].join(path)
    }

    /// Every file on the storage claims, as `<claim>/<path>`.
    fn claim_files(&self) -> Vec<String> {
        self.claims
            .iter()
            .flat_map(|(claim, dir)| {
                files_under(dir)
                    .into_iter()
                    .map(move |f| format!("{claim}/{f}"))
            })
            .collect()
    }

    /// Every set the inventory lists has its files on the claims, with the recorded size and
    /// checksum.
    fn assert_inventory_is_on_the_claims(&self, operator: &Operator) {
        for set in &operator.status().backups {
            for c in &set.components {
                let file = self.file(c);
                assert!(
                    file.is_file(),
                    "backup set {} lists {} at {}, which is gone; the claims hold {:?}",
                    set.id,
                    c.name,
                    file.display(),
                    self.claim_files()
                );
                assert_eq!(
                    c.size_bytes,
                    Some(std::fs::metadata(&file).unwrap().len() as i64)
                );
                assert_eq!(c.sha256.as_deref(), Some(sha256_of(&file).as_str()));
            }
        }
    }
}

fn extension(component: &str) -> &'static str {
    match component {
        "db" => "pgdump",
        "cache" => "rdb",
        _ => "tar.gz",
    }
}

fn ready(operator: &Operator) -> Condition {
    operator
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone()
}

fn backup_ids(operator: &Operator) -> Vec<&str> {
    let backups = &operator.status().backups;
    backups.iter().map(|b| b.id.as_str()).collect()
}

fn sets_images(decision: &Decision) -> bool {
    decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::SetImages { .. }))
}

/// Asks for the set's backup Jobs: all three at once, in spec order.
fn backup_jobs(operator: &mut Operator, attempt: i64) -> Vec<JobRequest> {
    let requests = operator.until_jobs(JobKind::Backup);
    let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let expected: Vec<String> = COMPONENTS
        .iter()
        .map(|c| format!("{RELEASE}-backup-{attempt}-{c}"))
        .collect();
    assert_eq!(names, expected, "every component's Job in one decision");
    requests
}

/// Tells the planner how the set's backup Jobs ended, one by one: nothing counts and nothing
/// moves before the last. Then checks the inventory's set against the files it names.
fn record_set(operator: &mut Operator, stores: &Stores, backups: &[Ran]) -> BackupRecord {
    let (last, first) = backups.split_last().unwrap();
    for ran in first {
        let decision = operator.job_finished(&ran.request, &ran.run);
        let id = set_id(&ran.request);
        assert!(
            operator.status().backups.iter().all(|b| b.id != id),
            "a set counts only whole"
        );
        assert!(
            !sets_images(&decision),
            "nothing moves before the whole set"
        );
    }
    operator.job_finished(&last.request, &last.run);
    let set = operator.status().backups[0].clone();
    assert_eq!(set.id, set_id(&last.request), "the set is recorded whole");
    let names: Vec<&str> = set.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, COMPONENTS);
    let mut total = 0;
    for (c, ran) in set.components.iter().zip(backups) {
        let claim = if c.name == "cache" {
            stores.cache_claim.as_str()
        } else {
            CLAIM
        };
        let name = format!("{}.{}", ran.request.name, extension(&c.name));
        let location = format!("pvc://{claim}/{NAMESPACE}/{RELEASE}/{name}");
        assert_eq!(c.job, ran.request.name);
        assert_eq!(c.location.as_deref(), Some(location.as_str()));
        let file = stores.file(c);
        let size = std::fs::metadata(&file).unwrap().len() as i64;
        let sha = sha256_of(&file);
        assert_eq!(c.size_bytes, Some(size), "{}", c.name);
        assert_eq!(c.sha256.as_deref(), Some(sha.as_str()), "{}", c.name);
        let sidecar =
            std::fs::read_to_string(file.with_file_name(format!("{name}.sha256"))).unwrap();
        assert_eq!(sidecar, format!("{sha}  {name}\n"));
        total += size;
    }
    assert_eq!(
        set.size_bytes,
        Some(total),
        "the set's size is its components' sum"
    );
    stores.assert_inventory_is_on_the_claims(operator);
    set
}

/// `shop-backup-1` of `shop-backup-1-db`.
fn set_id(request: &JobRequest) -> String {
    let component = request.component.as_deref().unwrap();
    request
        .name
        .strip_suffix(&format!("-{component}"))
        .unwrap()
        .to_string()
}

/// Takes a backup set with every component's Job succeeding, and records it.
fn take_set(operator: &mut Operator, stores: &Stores, attempt: i64) -> (BackupRecord, Vec<Ran>) {
    let requests = backup_jobs(operator, attempt);
    let backups = stores.run(operator, &requests, None);
    for ran in &backups {
        ran.run
            .assert_succeeded(&format!("backup of {}", ran.component));
    }
    let set = record_set(operator, stores, &backups);
    (set, backups)
}

/// Reconciles until the upgrade has ended, carrying out what the planner asks (no Job).
fn settle(operator: &mut Operator) {
    for _ in 0..30 {
        if operator.status().upgrade.is_none() {
            return;
        }
        operator.cluster.now += chrono::Duration::seconds(10);
        let decision = operator.decide();
        let jobs = created_jobs(&decision);
        assert!(jobs.is_empty(), "unexpected Jobs {jobs:?}");
        operator.carry_out(&decision);
    }
    panic!("the upgrade did not end: {:#?}", operator.status());
}

/// A new spec version, as `kubectl apply` would make it.
fn set_version(operator: &mut Operator, version: &str) {
    operator.release.spec.version = version.into();
    let generation = operator.release.metadata.generation.unwrap_or(1);
    operator.release.metadata.generation = Some(generation + 1);
}

#[test]
fn set_backup_and_rollback_round_trip_loses_nothing_on_one_claim() {
    round_trip(CLAIM);
}

#[test]
fn set_backup_and_rollback_round_trip_loses_nothing_with_db_and_cache_on_different_claims() {
    round_trip(CACHE_CLAIM);
}

fn round_trip(cache_claim: &str) {
    let started = Instant::now();
    let stores = Stores::start(cache_claim);
    stores.seed(2000, 1000, 500);
    let before = stores.snapshot();
    let mut operator = operator(cache_claim, 5);

    // The backup: three Jobs at once, counted when the last has reported.
    let (set, backups) = take_set(&mut operator, &stores, 1);
    assert_eq!(stores.snapshot(), before, "a backup changes nothing");

    // The rollout of 2.0 fails; meanwhile the new version changed all three stores.
    stores.damage();
    let damaged = stores.snapshot();
    for (diff, component) in before.diffs(&damaged).iter().zip(COMPONENTS) {
        assert!(!diff.is_clean(), "the damage to {component} is real");
    }

    // The rollback restores the components one at a time, in the recorded order.
    let mut request = operator.until_job(JobKind::Restore);
    assert_eq!(
        operator.cluster.deployments["web"].replicas, 0,
        "scaled down first"
    );
    let mut restores = Vec::new();
    for (i, recorded) in set.components.iter().enumerate() {
        assert_eq!(
            request.component.as_deref(),
            Some(COMPONENTS[i]),
            "in order"
        );
        assert_eq!(
            request.name,
            format!("{RELEASE}-restore-1-{}", COMPONENTS[i])
        );
        assert_eq!(request.backup_id.as_deref(), Some(recorded.job.as_str()));
        assert_eq!(request.backup_location, recorded.location);
        assert_eq!(request.backup_sha256, recorded.sha256);
        let ran = stores.run_one(&operator, &request);
        ran.run
            .assert_succeeded(&format!("restore of {}", ran.component));
        // This component is back; those after it are not restored yet.
        let diffs = before.diffs(&stores.snapshot());
        assert!(diffs[i].is_clean(), "{}: {}", COMPONENTS[i], diffs[i]);
        assert!(
            diffs[i + 1..].iter().all(|d| !d.is_clean()),
            "one at a time"
        );
        let decision = operator.job_finished(&request, &ran.run);
        let next = created_jobs(&decision);
        restores.push(ran);
        if i + 1 < COMPONENTS.len() {
            assert_eq!(next.len(), 1, "one restore at a time: {next:?}");
            request = next[0].clone();
        } else {
            assert!(next.is_empty(), "{next:?}");
            operator.carry_out(&decision);
        }
    }
    settle(&mut operator);
    let ready = ready(&operator);
    assert_eq!(ready.reason, "RolledBack", "{}", ready.message);
    let web = &operator.cluster.deployments["web"];
    assert_eq!(
        (web.containers[0].1.as_str(), web.replicas),
        ("example/web:1.0", 2)
    );

    let after = stores.snapshot();
    let diffs = before.diffs(&after);
    let what = [
        format!("{} rows", before.rows.len()),
        format!("{} keys", before.keys.len()),
        format!(
            "{} files ({} entries)",
            before.files.values().filter(|(k, _, _)| *k == 'f').count(),
            before.files.len()
        ),
    ];
    let claims = if cache_claim == CLAIM {
        "one claim"
    } else {
        "cache on its own claim"
    };
    for (i, component) in COMPONENTS.iter().enumerate() {
        println!(
            "set round trip ({claims}): {component}: {}, backup {} bytes in {:.2}s, restore in {:.2}s: {}",
            what[i],
            set.components[i].size_bytes.unwrap(),
            backups[i].seconds,
            restores[i].seconds,
            diffs[i]
        );
    }
    println!(
        "set round trip ({claims}): set {} of {} bytes, {:.1}s in all",
        set.id,
        set.size_bytes.unwrap(),
        started.elapsed().as_secs_f64()
    );
    for (diff, component) in diffs.iter().zip(COMPONENTS) {
        assert!(diff.is_clean(), "{component}: {diff}");
    }
    assert_eq!(after.sequences, before.sequences);
    assert_eq!(after, before);
    stores.pg.assert_schema_as_seeded();
}

#[test]
fn a_set_with_an_unreachable_cache_counts_nothing_and_the_next_good_set_prunes_its_leftovers() {
    let stores = Stores::start(CLAIM);
    stores.seed(200, 100, 60);
    let before = stores.snapshot();
    let mut operator = operator(CLAIM, 5);
    let requests = backup_jobs(&mut operator, 1);
    let backups = stores.run(&operator, &requests, Some("cache"));
    let [db, cache, uploads] = &backups[..] else {
        unreachable!()
    };
    db.run.assert_succeeded("db");
    uploads.run.assert_succeeded("uploads");
    cache.run.assert_failed_without_report("cache");
    assert!(
        cache.run.stderr.contains("Connection refused"),
        "{}",
        cache.run.stderr
    );
    let mut decision = None;
    for ran in &backups {
        decision = Some(operator.job_finished(&ran.request, &ran.run));
    }
    assert_backup_not_recorded(&operator, &decision.unwrap(), "unreachable cache");
    let message = ready(&operator).message;
    assert!(
        message.contains("backup set shop-backup-1 is not counted")
            && message.contains("shop-backup-1-cache failed"),
        "{message}"
    );
    let leftovers = ["shop-backup-1-db", "shop-backup-1-uploads"];
    assert_eq!(operator.status().incomplete_backups, leftovers);
    assert_eq!(stores.snapshot(), before, "nothing was changed");
    let claim_files = |id: &str| {
        let ext = extension(id.rsplit('-').next().unwrap());
        [
            format!("{CLAIM}/{NAMESPACE}/{RELEASE}/{id}.{ext}"),
            format!("{CLAIM}/{NAMESPACE}/{RELEASE}/{id}.{ext}.sha256"),
        ]
    };
    let written: Vec<String> = leftovers.iter().flat_map(|id| claim_files(id)).collect();
    assert_eq!(
        stores.claim_files(),
        written,
        "what db and uploads wrote is there"
    );

    // The next upgrade's set succeeds, and its Jobs delete the leftovers.
    set_version(&mut operator, "3.0");
    let requests = backup_jobs(&mut operator, 2);
    for r in &requests {
        assert_eq!(r.prune, leftovers, "{}", r.name);
    }
    let backups = stores.run(&operator, &requests, None);
    for ran in &backups {
        ran.run.assert_succeeded(&ran.component);
    }
    let set = record_set(&mut operator, &stores, &backups);
    assert_eq!(set.id, "shop-backup-2");
    assert!(operator.status().incomplete_backups.is_empty());
    let mut kept: Vec<String> = COMPONENTS
        .iter()
        .flat_map(|c| claim_files(&format!("shop-backup-2-{c}")))
        .collect();
    kept.sort();
    assert_eq!(
        stores.claim_files(),
        kept,
        "the leftovers are gone, the good set is there"
    );
    println!(
        "unreachable cache: set shop-backup-1 not counted, {} left over and pruned by shop-backup-2; cache said: {}",
        leftovers.join(", "),
        cache
            .run
            .stderr
            .lines()
            .find(|l| l.contains("failed"))
            .unwrap_or("")
    );
}

#[test]
fn a_damaged_cache_backup_stops_the_rollback_after_db_and_names_the_component() {
    let stores = Stores::start(CLAIM);
    stores.seed(300, 200, 80);
    let before = stores.snapshot();
    let mut operator = operator(CLAIM, 5);
    let (set, _) = take_set(&mut operator, &stores, 1);
    stores.damage();
    let damaged = stores.snapshot();
    // One flipped byte in the middle of the cache's snapshot.
    flip_middle_byte(&stores.file(&set.components[1]));

    let db = operator.until_job(JobKind::Restore);
    assert_eq!(db.component.as_deref(), Some("db"));
    let ran = stores.run_one(&operator, &db);
    ran.run.assert_succeeded("restore of db");
    let next = created_jobs(&operator.job_finished(&db, &ran.run));
    assert_eq!(next.len(), 1);
    let cache = &next[0];
    assert_eq!(cache.component.as_deref(), Some("cache"));
    let ran = stores.run_one(&operator, cache);
    assert!(!ran.run.succeeded(), "{}", ran.run.stdout);
    assert!(ran.run.stderr.contains("checksum"), "{}", ran.run.stderr);
    let decision = operator.job_finished(cache, &ran.run);
    assert!(
        created_jobs(&decision).is_empty(),
        "uploads is not restored"
    );
    assert!(!sets_images(&decision));
    // Later reconciles do not go on either.
    for _ in 0..3 {
        operator.cluster.now += chrono::Duration::minutes(1);
        let decision = operator.decide();
        assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    }

    let ready = ready(&operator);
    assert_eq!(ready.reason, "RollbackFailed");
    assert!(
        ready.message.contains("component cache") && ready.message.contains(&set.id),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("db restored before it"),
        "{}",
        ready.message
    );
    assert_eq!(
        operator.cluster.deployments["web"].replicas, 0,
        "targets stay at zero"
    );
    let after = stores.snapshot();
    let [db_diff, ..] = before.diffs(&after);
    assert!(db_diff.is_clean(), "db was restored: {db_diff}");
    assert_eq!(after.keys, damaged.keys, "the cache was not touched");
    assert_eq!(after.files, damaged.files, "the uploads were not touched");
    println!(
        "damaged cache backup: rollback stopped after db: {}",
        ready.message
    );
}

#[test]
fn check_jobs_verify_each_component_backup_and_touch_nothing() {
    let stores = Stores::start(CLAIM);
    stores.seed(300, 200, 80);
    let mut operator = operator(CLAIM, 5);
    let (set, _) = take_set(&mut operator, &stores, 1);
    // Changed since the backup: a check that restored anything would show.
    stores.damage();
    let current = stores.snapshot();
    // The Check Jobs an on-demand restore of the set runs first, as the planner asks for them.
    let checks: Vec<JobRequest> = set
        .components
        .iter()
        .map(|c| JobRequest {
            kind: JobKind::Check,
            component: Some(c.name.clone()),
            name: component_job_name(RELEASE, JobKind::Check, 2, Some(&c.name)),
            from: "1.0".into(),
            to: "1.0".into(),
            attempt: 2,
            app_image: "example/web:1.0".into(),
            backup_id: Some(c.job.clone()),
            backup_location: c.location.clone(),
            backup_sha256: c.sha256.clone(),
            prune: Vec::new(),
            timeout: Duration::from_secs(600),
        })
        .collect();
    for check in &checks {
        let env = operator
            .job_container(check)
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "APPRELEASE_RESTORE_CHECK" && e.value.as_deref() == Some("1")),
            "{env:?}"
        );
    }

    for (ran, c) in stores
        .run(&operator, &checks, None)
        .iter()
        .zip(&set.components)
    {
        ran.run
            .assert_succeeded(&format!("check of intact {}", c.name));
        let report: serde_json::Value =
            serde_json::from_str(ran.run.report.as_deref().expect("a report")).unwrap();
        assert_eq!(
            report["verified"],
            c.location.as_deref().unwrap(),
            "{}",
            c.name
        );
        assert_eq!(report["sha256"], c.sha256.as_deref().unwrap(), "{}", c.name);
        println!(
            "check of intact {}: {}",
            c.name,
            ran.run.stdout.trim().replace('\n', "; ")
        );
    }
    assert_eq!(
        stores.snapshot(),
        current,
        "an intact check touches nothing"
    );

    for c in &set.components {
        flip_middle_byte(&stores.file(c));
    }
    for (ran, c) in stores
        .run(&operator, &checks, None)
        .iter()
        .zip(&set.components)
    {
        ran.run
            .assert_failed_without_report(&format!("check of damaged {}", c.name));
        assert!(
            ran.run.stderr.contains("checksum") && ran.run.stderr.contains("the backup is damaged"),
            "{}: {}",
            c.name,
            ran.run.stderr
        );
        println!("check of damaged {}: {}", c.name, ran.run.stderr.trim());
    }
    assert_eq!(stores.snapshot(), current, "a failed check touches nothing");
}

/// In a cluster a set's pods start when each is scheduled and its image pulled, not
/// together: a component whose Job starts while another one is still writing its backup
/// must leave that file alone.
#[test]
fn a_component_starting_late_leaves_the_file_a_sibling_is_writing_alone() {
    let stores = Stores::start(CLAIM);
    stores.seed(300, 200, 80);
    let mut operator = operator(CLAIM, 5);
    let requests = backup_jobs(&mut operator, 1);
    // What an earlier set's Job killed at its deadline left: that one is a leftover.
    let dir = stores.claims[CLAIM].join(NAMESPACE).join(RELEASE);
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join(".shop-backup-0-cache.rdb.partial");
    std::fs::write(&stale, "cut off").unwrap();
    // db's pg_dump writes its whole file, then waits until the others have run.
    let fake = stores.scratch.dir("slow-pg_dump");
    let real = find_binary("pg_dump").expect("pg_dump");
    let script = format!(
        "#!/bin/sh\n{} \"$@\" || exit $?\n: >{dir}/written\nwhile [ ! -e {dir}/go ]; do sleep 0.05; done\n",
        real.display(),
        dir = fake.display()
    );
    std::fs::write(fake.join("pg_dump"), script).unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(fake.join("pg_dump")));
    let db_job = operator.job_container(&requests[0]);
    let mut db_mounts = stores.mounts("db");
    db_mounts.path_prefix.push(fake.clone());
    let db_secret = stores.secret("db", false);
    let backups = std::thread::scope(|s| {
        let db = s.spawn(|| run_container(&db_job, &db_secret, &db_mounts, &stores.scratch));
        wait_for("db's dump", Duration::from_secs(60), || {
            fake.join("written").exists()
        });
        let mut others = stores.run(&operator, &requests[1..], None);
        std::fs::write(fake.join("go"), "").unwrap();
        let db = Ran {
            request: requests[0].clone(),
            component: "db".into(),
            run: db.join().unwrap(),
            seconds: 0.0,
        };
        others.insert(0, db);
        others
    });
    for ran in &backups {
        ran.run
            .assert_succeeded(&format!("backup of {}", ran.component));
    }
    record_set(&mut operator, &stores, &backups);
    assert!(!stale.exists(), "an earlier set's leftover is removed");
}

/// Every component's Job deletes the backups retention let go as soon as its own file is
/// written, before the set as a whole has succeeded: when a sibling then fails, those
/// backups are gone from the claim all the same, and must be gone from the inventory too.
#[test]
fn a_set_that_fails_after_its_components_pruned_lists_no_pruned_set() {
    let stores = Stores::start(CLAIM);
    stores.seed(100, 60, 30);
    // keepLast 1: each upgrade's set may prune all but the last upgrade's.
    let mut operator = operator(CLAIM, 1);
    set_version(&mut operator, "3.0");
    let (first, _) = take_set(&mut operator, &stores, 1);
    settle(&mut operator);
    set_version(&mut operator, "4.0");
    let (second, _) = take_set(&mut operator, &stores, 2);
    settle(&mut operator);
    assert_eq!(operator.status().current_version.as_deref(), Some("4.0"));

    set_version(&mut operator, "5.0");
    let requests = backup_jobs(&mut operator, 3);
    let first_files: Vec<String> = first.components.iter().map(|c| c.job.clone()).collect();
    assert!(
        requests.iter().all(|r| r.prune == first_files),
        "{:?}",
        requests[0].prune
    );
    let backups = stores.run(&operator, &requests, Some("cache"));
    for ran in &backups {
        let decision = operator.job_finished(&ran.request, &ran.run);
        assert!(!sets_images(&decision));
    }
    assert_eq!(ready(&operator).reason, "BackupFailed");
    for c in &first.components {
        assert!(
            !stores.file(c).exists(),
            "db's and uploads' Jobs pruned {}",
            c.job
        );
    }
    assert_eq!(
        backup_ids(&operator),
        [second.id.as_str()],
        "the inventory lists only sets whose files exist"
    );
    stores.assert_inventory_is_on_the_claims(&operator);
    assert_eq!(
        operator.status().incomplete_backups,
        ["shop-backup-3-db", "shop-backup-3-uploads"]
    );
}
