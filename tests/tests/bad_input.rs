//! Scenario 9: malformed and impossible specs are refused at the door by a real API server
//! (the CRD's CEL rules and schema: 422) or, when only the operator can tell (a Deployment or
//! container that does not exist, a malformed pod template), get a readable condition and an
//! Event; either way nothing is written to any Deployment or Job. Each input says which of
//! them refuses it, and that is asserted; the simulator enforces the schema but evaluates no
//! CEL, so there the CEL inputs reach the operator, which must report them just as well.

use apprelease_e2e::fixtures::{self, Jobs, V1};
use apprelease_e2e::{Scenario, inspect};
use apprelease_operator::api::AppRelease;
use apprelease_operator::api::conditions::{ConditionStatus, STALLED};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// A valid spec to break, as JSON.
fn base(s: &Scenario) -> Value {
    let release = fixtures::release(&s.cluster, "base", V1, &Jobs::default());
    serde_json::to_value(&release.spec).unwrap()
}

/// A bad input: its name, how it breaks the spec, what the message must mention, and who
/// refuses it.
type Case = (&'static str, fn(&mut Value), &'static str, Gate);

/// Who refuses an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// The CRD's OpenAPI schema (a length bound): every API server, the simulator too (422).
    Schema,
    /// The CRD's CEL rules: a real API server (422); the simulator evaluates no CEL.
    Cel,
    /// Only the operator can tell.
    Operator,
}

fn cases() -> Vec<Case> {
    vec![
        (
            "unknown-deployment",
            |s| s["targets"][1]["deployment"] = json!("payments"),
            "payments",
            Gate::Operator,
        ),
        (
            "unknown-container",
            |s| s["targets"][0]["containers"] = json!(["api"]),
            "no container \"api\"",
            Gate::Operator,
        ),
        (
            "version-plus",
            |s| s["version"] = json!("1.0+build"),
            "spec.version",
            Gate::Cel,
        ),
        (
            "version-slash",
            |s| s["version"] = json!("release/1"),
            "spec.version",
            Gate::Cel,
        ),
        (
            "version-dot",
            |s| s["version"] = json!(".1"),
            "spec.version",
            Gate::Cel,
        ),
        (
            "version-empty",
            |s| s["version"] = json!(""),
            "spec.version",
            Gate::Cel,
        ),
        (
            "version-long",
            |s| s["version"] = json!("v".repeat(129)),
            "spec.version",
            Gate::Schema,
        ),
        (
            "no-targets",
            |s| s["targets"] = json!([]),
            "spec.targets",
            Gate::Cel,
        ),
        (
            "duplicate-target",
            |s| {
                let first = s["targets"][0].clone();
                s["targets"].as_array_mut().unwrap().push(first)
            },
            "listed twice",
            Gate::Cel,
        ),
        (
            "bad-deployment-name",
            |s| s["targets"][0]["deployment"] = json!("Back_End"),
            "not a Deployment name",
            Gate::Cel,
        ),
        (
            "no-containers-listed",
            |s| s["targets"][0]["containers"] = json!([]),
            "containers",
            Gate::Operator,
        ),
        (
            "image-with-tag",
            |s| s["targets"][0]["image"] = json!("busybox:1.36"),
            "without tag",
            Gate::Cel,
        ),
        (
            "image-with-digest",
            |s| s["targets"][0]["image"] = json!("busybox@sha256:0123"),
            "without tag",
            Gate::Cel,
        ),
        (
            "keep-last-zero",
            |s| s["backup"]["keepLast"] = json!(0),
            "keepLast",
            Gate::Cel,
        ),
        (
            "timeout-words",
            |s| s["rollout"]["timeout"] = json!("soon"),
            "spec.rollout.timeout",
            Gate::Cel,
        ),
        (
            "timeout-zero",
            |s| s["migration"]["timeout"] = json!("0s"),
            "longer than zero",
            Gate::Cel,
        ),
        (
            "timeout-fraction",
            |s| s["backup"]["timeout"] = json!("1.5h"),
            "spec.backup.timeout",
            Gate::Cel,
        ),
        (
            "migration-no-containers",
            |s| s["migration"]["template"]["spec"]["containers"] = json!([]),
            "at least one container",
            Gate::Operator,
        ),
        (
            "verify-no-pod-spec",
            |s| s["verify"]["template"] = json!({"metadata": {}}),
            "spec.verify.template.spec",
            Gate::Operator,
        ),
        (
            "restart-always",
            |s| s["backup"]["template"]["spec"]["restartPolicy"] = json!("Always"),
            "restartPolicy",
            Gate::Operator,
        ),
        (
            "downgrade-without-template",
            |s| s["rollback"] = json!({"database": "Downgrade"}),
            "downgrade",
            Gate::Cel,
        ),
        (
            "restore-without-template",
            |s| s["rollback"] = json!({"database": "Restore"}),
            "restore",
            Gate::Cel,
        ),
        (
            "restore-without-backup",
            |s| {
                // A restore JobTemplate is a template and a timeout (a migration's `when`
                // would be an unknown field, which a real server refuses in an apply).
                let restore =
                    json!({"template": s["migration"]["template"].clone(), "timeout": "5m"});
                s["rollback"] = json!({"database": "Restore", "restore": restore});
                s.as_object_mut().unwrap().remove("backup");
            },
            "backup",
            Gate::Cel,
        ),
    ]
}

#[tokio::test]
async fn s09_bad_specs_get_a_condition_and_an_event_and_change_nothing() -> anyhow::Result<()> {
    let s = Scenario::start("bad-input").await?;
    let api: Api<AppRelease> = Api::namespaced(s.cluster.client.clone(), &s.cluster.namespace);
    let mut reported = Vec::new();
    let mut refused = Vec::new();
    for (name, break_it, expected, _) in cases() {
        let mut spec = base(&s);
        break_it(&mut spec);
        let body = json!({"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": name}, "spec": spec});
        match api
            .patch(name, &PatchParams::apply("e2e-user"), &Patch::Apply(body))
            .await
        {
            // Refused at the door (a real API server's CEL rules, or the schema): no change.
            Err(kube::Error::Api(status)) if status.code == 422 => {
                refused.push((name, status.message))
            }
            Err(e) => return Err(e.into()),
            Ok(_) => reported.push((name, expected)),
        }
    }
    for (name, expected) in &reported {
        let status = s
            .wait_for(name, &format!("{name} reports its problem"), |st| {
                inspect::ready(st).is_some_and(|(c, r)| {
                    c == ConditionStatus::False && (r == "InvalidSpec" || r == "TargetNotFound")
                })
            })
            .await?;
        let ready = inspect::condition(&status, "Ready").unwrap();
        assert!(
            ready.message.contains(expected),
            "{name}: {:?} does not mention {expected:?}",
            ready.message
        );
        assert!(
            ready.message.contains("nothing was changed"),
            "{name}: {}",
            ready.message
        );
        assert!(inspect::is_true(&status, STALLED), "{name}");
        assert!(status.upgrade.is_none(), "{name}: no upgrade started");
        let events = s.events_with(name, &[ready.reason.as_str()]).await?;
        assert!(
            events.iter().any(|(reason, _)| *reason == ready.reason),
            "{name}: no {} Event in {events:?}",
            ready.reason
        );
    }
    assert_eq!(reported.len() + refused.len(), cases().len());
    assert!(cases().len() >= 20);
    // Input by input: refused at the door exactly when the CRD can tell; the simulator
    // enforces the schema but evaluates no CEL, so those inputs reach the operator there.
    for (name, _, _, gate) in cases() {
        let was_refused = refused.iter().find(|(n, _)| *n == name);
        let expected = match gate {
            Gate::Schema => true,
            Gate::Cel => !s.cluster.is_simulated(),
            Gate::Operator => false,
        };
        assert_eq!(
            was_refused.is_some(),
            expected,
            "{name}: refused by the server: {was_refused:?}"
        );
    }
    eprintln!("refused by the API server (422): {refused:#?}");
    let writes = inspect::workload_writes(&s.cluster, "apprelease-operator");
    assert!(writes.is_empty(), "the operator wrote {writes:?}");
    for name in ["backend", "frontend"] {
        assert_eq!(
            inspect::image(&s.cluster, name, name).await?,
            format!("busybox:{V1}")
        );
    }
    assert!(
        inspect::jobs(&s.cluster).await?.is_empty(),
        "no Job was created"
    );
    Ok(())
}
