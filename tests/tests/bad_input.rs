//! Scenario 9: malformed and impossible specs are refused at the door by a real API server
//! (the CRD's CEL rules and schema: 422) or, when only the operator can tell (a Deployment or
//! container that does not exist, a malformed pod template), get a readable condition and an
//! Event; either way nothing is written to any Deployment or Job. Each input says which of
//! the two it is, and that is asserted on a real server; the simulator evaluates no CEL, so
//! there every input reaches the operator, which must report it just as well.

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

/// A bad input: its name, how it breaks the spec, what the message must mention, and whether
/// a real API server refuses it (422, the CRD's CEL rules) rather than the operator reporting it.
type Case = (&'static str, fn(&mut Value), &'static str, bool);

/// Refused by a real server's CEL rules.
const CEL: bool = true;
/// Only the operator can tell.
const OPERATOR: bool = false;

fn cases() -> Vec<Case> {
    vec![
        (
            "unknown-deployment",
            |s| s["targets"][1]["deployment"] = json!("payments"),
            "payments",
            OPERATOR,
        ),
        (
            "unknown-container",
            |s| s["targets"][0]["containers"] = json!(["api"]),
            "no container \"api\"",
            OPERATOR,
        ),
        (
            "version-plus",
            |s| s["version"] = json!("1.0+build"),
            "spec.version",
            CEL,
        ),
        (
            "version-slash",
            |s| s["version"] = json!("release/1"),
            "spec.version",
            CEL,
        ),
        (
            "version-dot",
            |s| s["version"] = json!(".1"),
            "spec.version",
            CEL,
        ),
        (
            "version-empty",
            |s| s["version"] = json!(""),
            "spec.version",
            CEL,
        ),
        (
            "version-long",
            |s| s["version"] = json!("v".repeat(129)),
            "spec.version",
            CEL,
        ),
        (
            "no-targets",
            |s| s["targets"] = json!([]),
            "spec.targets",
            CEL,
        ),
        (
            "duplicate-target",
            |s| {
                let first = s["targets"][0].clone();
                s["targets"].as_array_mut().unwrap().push(first)
            },
            "listed twice",
            CEL,
        ),
        (
            "bad-deployment-name",
            |s| s["targets"][0]["deployment"] = json!("Back_End"),
            "not a Deployment name",
            CEL,
        ),
        (
            "no-containers-listed",
            |s| s["targets"][0]["containers"] = json!([]),
            "containers",
            OPERATOR,
        ),
        (
            "image-with-tag",
            |s| s["targets"][0]["image"] = json!("busybox:1.36"),
            "without tag",
            CEL,
        ),
        (
            "image-with-digest",
            |s| s["targets"][0]["image"] = json!("busybox@sha256:0123"),
            "without tag",
            CEL,
        ),
        (
            "keep-last-zero",
            |s| s["backup"]["keepLast"] = json!(0),
            "keepLast",
            CEL,
        ),
        (
            "timeout-words",
            |s| s["rollout"]["timeout"] = json!("soon"),
            "spec.rollout.timeout",
            CEL,
        ),
        (
            "timeout-zero",
            |s| s["migration"]["timeout"] = json!("0s"),
            "longer than zero",
            CEL,
        ),
        (
            "timeout-fraction",
            |s| s["backup"]["timeout"] = json!("1.5h"),
            "spec.backup.timeout",
            CEL,
        ),
        (
            "migration-no-containers",
            |s| s["migration"]["template"]["spec"]["containers"] = json!([]),
            "at least one container",
            OPERATOR,
        ),
        (
            "verify-no-pod-spec",
            |s| s["verify"]["template"] = json!({"metadata": {}}),
            "spec.verify.template.spec",
            OPERATOR,
        ),
        (
            "restart-always",
            |s| s["backup"]["template"]["spec"]["restartPolicy"] = json!("Always"),
            "restartPolicy",
            OPERATOR,
        ),
        (
            "downgrade-without-template",
            |s| s["rollback"] = json!({"database": "Downgrade"}),
            "downgrade",
            CEL,
        ),
        (
            "restore-without-template",
            |s| s["rollback"] = json!({"database": "Restore"}),
            "restore",
            CEL,
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
            CEL,
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
    if s.cluster.is_simulated() {
        // The simulator does not evaluate CEL, so every case reaches the operator.
        assert!(refused.is_empty(), "refused by the simulator: {refused:?}");
    } else {
        // Input by input: refused at the door exactly when the CRD's rules can tell.
        for (name, _, _, by_cel) in cases() {
            let was_refused = refused.iter().find(|(n, _)| *n == name);
            assert_eq!(
                was_refused.is_some(),
                by_cel,
                "{name}: refused by the server: {was_refused:?}"
            );
        }
        eprintln!("refused by the API server (422): {refused:#?}");
    }
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
