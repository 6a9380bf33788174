//! The Argo CD health check we ship (`manifests/integrations/argocd/health.lua`), run by a
//! real Lua interpreter (Debian's `lua5.4`) on statuses the planner writes.

use std::process::Command;

use apprelease_operator::api::AppRelease;
use serde_json::{Value, json};

/// A Lua table constructor for a JSON value (what Argo CD hands the script as `obj`).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// (status, message) the health check gives `obj`.
fn health(obj: &Value) -> (String, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/integrations/argocd/health.lua"
    );
    let program = format!(
        "obj = {}\nlocal hs = dofile({script:?})\nio.write(hs.status, \"\\n\", hs.message or \"\")",
        lua(obj)
    );
    let output = Command::new("lua5.4")
        .args(["-e", &program])
        .output()
        .expect("lua5.4 is installed (Debian: lua5.4)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_string(), message.to_string())
}

fn release(generation: i64, status: Value) -> Value {
    let mut obj = serde_json::to_value(AppRelease::new(
        "meet",
        serde_json::from_value(json!({
            "version": "1.1.0", "targets": [{"deployment": "backend"}]
        }))
        .unwrap(),
    ))
    .unwrap();
    obj["metadata"]["generation"] = json!(generation);
    obj["status"] = status;
    obj
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-21T12:00:00Z", "observedGeneration": 3})
}

#[test]
fn maps_the_operators_conditions_to_argo_cd_health() {
    let with = |conditions: Vec<Value>| {
        release(
            3,
            json!({"observedGeneration": 3, "conditions": conditions}),
        )
    };
    let cases = [
        (release(3, Value::Null), "Progressing", "latest spec"),
        (
            release(
                4,
                json!({"observedGeneration": 3, "conditions": [condition("Ready", "True", "Succeeded", "ok")]}),
            ),
            "Progressing",
            "latest spec",
        ),
        (
            with(vec![condition("Ready", "True", "Succeeded", "1.1.0 runs")]),
            "Healthy",
            "Succeeded: 1.1.0 runs",
        ),
        (
            with(vec![
                condition("Ready", "Unknown", "Progressing", "backing up"),
                condition("Reconciling", "True", "BackingUp", "backup Job running"),
            ]),
            "Progressing",
            "BackingUp: backup Job running",
        ),
        (
            with(vec![
                condition("Ready", "False", "RolledBack", "rolled back to 1.0.0"),
                condition("Stalled", "True", "RolledBack", "rolled back to 1.0.0"),
            ]),
            "Degraded",
            "RolledBack: rolled back to 1.0.0",
        ),
        (
            with(vec![condition(
                "Ready",
                "False",
                "Suspended",
                "spec.suspend is true",
            )]),
            "Suspended",
            "spec.suspend",
        ),
        (
            with(vec![condition(
                "Ready",
                "False",
                "AwaitingWindow",
                "the upgrade to 1.2.0 waits for the next maintenance window, which opens at 2026-11-22T04:00:00+01:00 (Europe/Berlin)",
            )]),
            "Suspended",
            "AwaitingWindow: the upgrade to 1.2.0 waits for the next maintenance window, which opens at 2026-11-22T04:00:00+01:00",
        ),
        // At the version, a target still coming up: in progress, as for Flux (kstatus).
        (
            with(vec![
                condition("Ready", "False", "TargetsUnavailable", "frontend 1/2"),
                condition("Reconciling", "True", "TargetsUnavailable", "frontend 1/2"),
            ]),
            "Progressing",
            "TargetsUnavailable: frontend 1/2",
        ),
        // Past its progress deadline: failed.
        (
            with(vec![
                condition("Ready", "False", "TargetsUnavailable", "frontend 1/2"),
                condition("Stalled", "True", "TargetsUnavailable", "frontend 1/2"),
            ]),
            "Degraded",
            "TargetsUnavailable: frontend 1/2",
        ),
        // Drift the operator stopped repairing (docs/gitops.md).
        (
            with(vec![
                condition("Ready", "False", "Drifted", "set by kustomize-controller"),
                condition("Stalled", "True", "Drifted", "set by kustomize-controller"),
            ]),
            "Degraded",
            "Drifted: set by kustomize-controller",
        ),
    ];
    for (obj, status, message) in cases {
        let (got, said) = health(&obj);
        assert_eq!(got, status, "{obj}");
        assert!(
            said.contains(message),
            "{said:?} does not contain {message:?}"
        );
    }
}
