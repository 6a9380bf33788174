//! The CRD's CEL rules, evaluated the way an API server does, agree with the operator's own
//! validation: what the server would reject, the operator reports too, and the example passes.

use apprelease_operator::api::{AppRelease, DatabaseRollback, Target, validate::validate};
use kube::core::cel::validate_cel;
use serde_json::Value;

fn shipped_example() -> AppRelease {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/examples/meet.yaml"
    ))
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let doc = docs
        .into_iter()
        .find(|d| d["kind"] == "AppRelease")
        .unwrap();
    serde_json::from_value(doc).unwrap()
}

/// The shipped example with a hand-written backup Job instead of its preset and no database
/// rollback: the base the cases below break one field at a time.
fn example() -> AppRelease {
    let mut release = shipped_example();
    let template = release.spec.migration.as_ref().unwrap().template.clone();
    let backup = release.spec.backup.as_mut().unwrap();
    backup.preset = None;
    backup.template = Some(template);
    release.spec.rollback.database = DatabaseRollback::None;
    release
}

#[test]
fn the_examples_pass_the_cel_rules() {
    validate_cel(&shipped_example()).expect("the shipped example is valid");
    assert_eq!(validate(&shipped_example().spec), vec![]);
    validate_cel(&example()).expect("the template variant is valid");
    assert_eq!(validate(&example().spec), vec![]);
    let mut with_statefulset = example();
    with_statefulset
        .spec
        .targets
        .push(Target::stateful_set("worker"));
    validate_cel(&with_statefulset).expect("a StatefulSet target is valid");
    assert_eq!(validate(&with_statefulset.spec), vec![]);
}

#[test]
fn cel_rules_reject_what_the_operator_rejects() {
    type Break = fn(&mut AppRelease);
    let cases: Vec<(&str, Break)> = vec![
        ("version with +", |r| r.spec.version = "1.0+build".into()),
        ("version starting with .", |r| r.spec.version = ".1".into()),
        ("empty version", |r| r.spec.version = String::new()),
        ("no targets", |r| r.spec.targets.clear()),
        ("duplicate target", |r| {
            let t = r.spec.targets[0].clone();
            r.spec.targets.push(t)
        }),
        ("bad deployment name", |r| {
            r.spec.targets[0].deployment = Some("Back_End".into())
        }),
        ("image with tag", |r| {
            r.spec.targets[0].image = Some("ghcr.io/x/y:1".into())
        }),
        ("image with digest", |r| {
            r.spec.targets[0].image = Some("y@sha256:00".into())
        }),
        ("keepLast 0", |r| {
            r.spec.backup.as_mut().unwrap().keep_last = 0
        }),
        ("malformed timeout", |r| {
            r.spec.rollout.timeout = "soon".into()
        }),
        ("zero timeout", |r| {
            r.spec.migration.as_mut().unwrap().timeout = "0s".into()
        }),
        ("fractional timeout", |r| {
            r.spec.verify.as_mut().unwrap().timeout = "1.5h".into()
        }),
        ("downgrade without template", |r| {
            r.spec.rollback.database = DatabaseRollback::Downgrade
        }),
        ("restore without template", |r| {
            r.spec.rollback.database = DatabaseRollback::Restore
        }),
        ("target naming both a Deployment and a StatefulSet", |r| {
            r.spec.targets[0].stateful_set = Some("worker".into())
        }),
        ("target naming no workload", |r| {
            r.spec.targets[0].deployment = None
        }),
        ("bad statefulSet name", |r| {
            r.spec.targets.push(Target::stateful_set("Wor_ker"))
        }),
        ("a StatefulSet with a Deployment target's name", |r| {
            let name = r.spec.targets[0].name().to_string();
            r.spec.targets.push(Target::stateful_set(name))
        }),
        ("a StatefulSet listed twice", |r| {
            r.spec.targets.push(Target::stateful_set("worker"));
            r.spec.targets.push(Target::stateful_set("worker"));
        }),
    ];
    for (name, break_it) in cases {
        let mut release = example();
        break_it(&mut release);
        assert!(
            validate_cel(&release).is_err(),
            "{name}: the CRD accepts it"
        );
        assert!(
            !validate(&release.spec).is_empty(),
            "{name}: the operator accepts it"
        );
    }
}

fn with_preset(release: &mut AppRelease, preset: serde_json::Value) {
    let backup = release.spec.backup.as_mut().unwrap();
    backup.template = None;
    backup.preset = Some(serde_json::from_value(preset).unwrap());
}

fn postgres_preset() -> Value {
    serde_json::json!({"postgres": {"connectionSecret": "meet-db", "storage": {"pvc": "meet-backups"}}})
}

#[test]
fn cel_rules_and_the_operator_agree_on_backup_presets() {
    type Change = fn(&mut AppRelease);
    let valid: Vec<(&str, Change)> = vec![
        ("postgres preset", |r| with_preset(r, postgres_preset())),
        ("preset with maxAge in days", |r| {
            with_preset(r, postgres_preset());
            r.spec.backup.as_mut().unwrap().max_age = Some("30d".into());
        }),
        ("maxAge in hours", |r| {
            r.spec.backup.as_mut().unwrap().max_age = Some("720h".into())
        }),
        ("restore from a preset without a restore template", |r| {
            with_preset(r, postgres_preset());
            r.spec.rollback.database = DatabaseRollback::Restore;
            r.spec.rollback.restore = None;
        }),
        ("volume preset", |r| {
            with_preset(
                r,
                serde_json::json!({"volume": {"claim": "meet-uploads", "storage": {"pvc": "meet-backups"}, "image": "busybox:1.36"}}),
            )
        }),
    ];
    for (name, change) in valid {
        let mut release = example();
        change(&mut release);
        validate_cel(&release).unwrap_or_else(|e| panic!("{name}: the CRD rejects it: {e:?}"));
        assert_eq!(validate(&release.spec), vec![], "{name}");
    }
    let invalid: Vec<(&str, Change)> = vec![
        ("template and preset", |r| {
            let template = r.spec.backup.as_ref().unwrap().template.clone();
            with_preset(r, postgres_preset());
            r.spec.backup.as_mut().unwrap().template = template;
        }),
        ("neither template nor preset", |r| {
            r.spec.backup.as_mut().unwrap().template = None
        }),
        ("volume preset archiving its storage claim", |r| {
            with_preset(
                r,
                serde_json::json!({"volume": {"claim": "meet-backups", "storage": {"pvc": "meet-backups"}}}),
            )
        }),
        ("bad secret name", |r| {
            with_preset(
                r,
                serde_json::json!({"mysql": {"connectionSecret": "Meet_DB", "storage": {"pvc": "meet-backups"}}}),
            )
        }),
        ("bad storage claim", |r| {
            with_preset(
                r,
                serde_json::json!({"redis": {"connectionSecret": "meet-db", "storage": {"pvc": "/etc"}}}),
            )
        }),
        ("maxAge in weeks", |r| {
            r.spec.backup.as_mut().unwrap().max_age = Some("4w".into())
        }),
        ("zero maxAge", |r| {
            r.spec.backup.as_mut().unwrap().max_age = Some("0d0h".into())
        }),
        (
            "restore from a template backup without a restore template",
            |r| {
                r.spec.rollback.database = DatabaseRollback::Restore;
                r.spec.rollback.restore = None;
            },
        ),
    ];
    for (name, change) in invalid {
        let mut release = example();
        change(&mut release);
        assert!(
            validate_cel(&release).is_err(),
            "{name}: the CRD accepts it"
        );
        assert!(
            !validate(&release.spec).is_empty(),
            "{name}: the operator accepts it"
        );
    }
}

/// `backup.components` from JSON, in place of the example's template.
fn with_set(release: &mut AppRelease, components: Value) {
    let backup = release.spec.backup.as_mut().unwrap();
    backup.template = None;
    backup.components = serde_json::from_value(components).unwrap();
}

/// PostgreSQL, Redis and a volume, all presets.
fn preset_set() -> Value {
    serde_json::json!([
        {"name": "db", "preset": postgres_preset()},
        {"name": "cache", "preset": {"redis": {"connectionSecret": "meet-redis", "storage": {"pvc": "meet-backups"}}}},
        {"name": "uploads", "preset": {"volume": {"claim": "meet-uploads", "storage": {"pvc": "meet-backups"}}}},
    ])
}

#[test]
fn cel_rules_and_the_operator_agree_on_backup_sets() {
    type Change = fn(&mut AppRelease);
    let valid: Vec<(&str, Change)> = vec![
        ("three presets", |r| with_set(r, preset_set())),
        ("three presets, restored on rollback", |r| {
            with_set(r, preset_set());
            r.spec.rollback.database = DatabaseRollback::Restore;
        }),
        ("a template component with its restore", |r| {
            let t = serde_json::json!({"spec": {"containers": [{"name": "dump", "image": "busybox:1.36"}]}});
            with_set(
                r,
                serde_json::json!([{"name": "config", "template": t, "restore": {"template": t}}]),
            );
            r.spec.rollback.database = DatabaseRollback::Restore;
        }),
    ];
    for (name, change) in valid {
        let mut release = example();
        change(&mut release);
        validate_cel(&release).unwrap_or_else(|e| panic!("{name}: the CRD rejects it: {e:?}"));
        assert_eq!(validate(&release.spec), vec![], "{name}");
    }
    let invalid: Vec<(&str, Change)> = vec![
        ("components and a template", |r| {
            let t = r.spec.backup.as_ref().unwrap().template.clone();
            with_set(r, preset_set());
            r.spec.backup.as_mut().unwrap().template = t;
        }),
        ("a name listed twice", |r| {
            let mut set = preset_set();
            set[2]["name"] = "db".into();
            with_set(r, set);
        }),
        ("a name that is not a DNS label", |r| {
            let mut set = preset_set();
            set[0]["name"] = "Main_DB".into();
            with_set(r, set);
        }),
        ("a name too long for its Jobs", |r| {
            let mut set = preset_set();
            set[0]["name"] = "the-main-postgres-database".into();
            with_set(r, set);
        }),
        ("a component with neither template nor preset", |r| {
            with_set(r, serde_json::json!([{"name": "db"}]));
        }),
        ("a preset component with a restore template", |r| {
            let mut set = preset_set();
            set[0]["restore"] = serde_json::json!({"template": {"spec": {"containers": [{"name": "x", "image": "busybox:1.36"}]}}});
            with_set(r, set);
        }),
        (
            "a template component without restore, database Restore",
            |r| {
                let t = serde_json::json!({"spec": {"containers": [{"name": "dump", "image": "busybox:1.36"}]}});
                with_set(r, serde_json::json!([{"name": "config", "template": t}]));
                r.spec.rollback.database = DatabaseRollback::Restore;
            },
        ),
        ("rollback.restore beside a set", |r| {
            with_set(r, preset_set());
            let t = r.spec.migration.as_ref().unwrap().template.clone();
            r.spec.rollback.restore = Some(apprelease_operator::api::JobTemplate {
                template: t,
                timeout: "5m".into(),
            });
        }),
    ];
    for (name, change) in invalid {
        let mut release = example();
        change(&mut release);
        assert!(
            validate_cel(&release).is_err(),
            "{name}: the CRD accepts it"
        );
        assert!(
            !validate(&release.spec).is_empty(),
            "{name}: the operator accepts it"
        );
    }
}

#[test]
fn cel_rules_and_the_operator_agree_on_maintenance_windows() {
    use apprelease_operator::api::MaintenanceWindow;
    let window = |schedule: &str, duration: &str, zone: &str| MaintenanceWindow {
        schedule: schedule.into(),
        duration: duration.into(),
        time_zone: zone.into(),
    };
    let mut release = example();
    release.spec.maintenance_windows = vec![
        window("0 4 * * *", "2h", "Europe/Berlin"),
        window("30 22 * * FRI", "45m", "UTC"),
    ];
    validate_cel(&release).expect("valid windows pass the CEL rules");
    assert_eq!(validate(&release.spec), vec![]);

    for duration in ["2 hours", "0s", "1.5h", ""] {
        let mut release = example();
        release.spec.maintenance_windows = vec![window("0 4 * * *", duration, "UTC")];
        assert!(
            validate_cel(&release).is_err(),
            "{duration:?}: the CRD accepts it"
        );
        assert!(
            !validate(&release.spec).is_empty(),
            "{duration:?}: the operator accepts it"
        );
    }
    let mut release = example();
    release.spec.maintenance_windows = vec![window("0 4 * * *", "1h", "UTC"); 17];
    // The schema's maxItems (not a CEL rule) bounds the list on the server.
    assert!(
        !validate(&release.spec).is_empty(),
        "17 windows: the operator accepts them"
    );

    // CEL cannot read cron or the zone database: the server takes these, and the operator
    // reports them (InvalidSpec) before changing anything.
    for (schedule, zone) in [
        ("0 4 * *", "UTC"),
        ("0 4 31 4 *", "UTC"),
        ("0 4 * * *", "Mars/Olympus"),
    ] {
        let mut release = example();
        release.spec.maintenance_windows = vec![window(schedule, "1h", zone)];
        validate_cel(&release).unwrap_or_else(|e| panic!("{schedule} {zone}: {e:?}"));
        assert!(
            !validate(&release.spec).is_empty(),
            "{schedule} {zone}: the operator accepts it"
        );
    }
}

fn with_webhook(release: &mut AppRelease, secret_ref: Value) {
    release.spec.notifications = Some(
        serde_json::from_value(serde_json::json!({"webhook": {"urlSecretRef": secret_ref}}))
            .unwrap(),
    );
}

#[test]
fn cel_rules_and_the_operator_agree_on_the_webhook_secret() {
    // The key defaults to `url`.
    let mut release = example();
    with_webhook(&mut release, serde_json::json!({"name": "meet-webhook"}));
    let webhook = &release.spec.notifications.as_ref().unwrap().webhook;
    assert_eq!(webhook.url_secret_ref.key, "url");
    validate_cel(&release).expect("the CRD accepts a Secret name alone");
    assert_eq!(validate(&release.spec), vec![]);
    with_webhook(
        &mut release,
        serde_json::json!({"name": "chat.hooks", "key": "SLACK_WEBHOOK_URL.v2"}),
    );
    validate_cel(&release).expect("the CRD accepts any Secret key");
    assert_eq!(validate(&release.spec), vec![]);

    for (name, secret_ref, path) in [
        (
            "upper-case Secret name",
            serde_json::json!({"name": "Meet_Webhook"}),
            "urlSecretRef.name",
        ),
        (
            "key with a slash",
            serde_json::json!({"name": "meet-webhook", "key": "hooks/slack"}),
            "urlSecretRef.key",
        ),
        (
            "empty key",
            serde_json::json!({"name": "meet-webhook", "key": ""}),
            "urlSecretRef.key",
        ),
    ] {
        let mut release = example();
        with_webhook(&mut release, secret_ref);
        assert!(
            validate_cel(&release).is_err(),
            "{name}: the CRD accepts it"
        );
        let errors = validate(&release.spec);
        assert!(
            errors
                .iter()
                .any(|e| e.path == format!("spec.notifications.webhook.{path}")),
            "{name}: the operator does not name the field: {errors:?}"
        );
    }
}
