//! The CRD's CEL rules, evaluated the way an API server does, agree with the operator's own
//! validation: what the server would reject, the operator reports too, and the example passes.

use apprelease_operator::api::{AppRelease, DatabaseRollback, validate::validate};
use kube::core::cel::validate_cel;
use serde_json::Value;

fn example() -> AppRelease {
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

#[test]
fn the_example_passes_the_cel_rules() {
    validate_cel(&example()).expect("the example is valid");
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
            r.spec.targets[0].deployment = "Back_End".into()
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
