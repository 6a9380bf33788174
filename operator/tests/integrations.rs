//! The monitoring we ship (`manifests/integrations/{grafana,prometheus}`): valid JSON and
//! YAML of the expected shapes, and every metric (and every label a selector matches on) that
//! their PromQL uses exists in the operator's registry, rendered as `/metrics` renders it.

use std::collections::{BTreeMap, BTreeSet};

use apprelease_operator::api::{Step, UpgradeResult};
use apprelease_operator::metrics::*;
use apprelease_operator::plan::Telemetry;
use apprelease_operator::plan::telemetry::{BackupResult, Ended, StepTime};
use serde_json::Value;

fn read(path: &str) -> String {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every series name the registry exposes, with the labels it carries: a registry with one
/// sample in each family (an empty family is not rendered).
fn exposed() -> BTreeMap<String, BTreeSet<String>> {
    let metrics = Metrics::default();
    metrics.record(&Telemetry {
        steps: vec![StepTime {
            step: Step::BackingUp,
            seconds: 1.0,
        }],
        upgrades: vec![Ended {
            result: UpgradeResult::Failed,
            reason: "RollbackFailed".into(),
        }],
        backups: vec![BackupResult::Failed],
    });
    metrics
        .events
        .get_or_create(&EventLabels {
            reason: "RolledBack".into(),
        })
        .inc();
    metrics
        .errors
        .get_or_create(&ErrorLabels {
            error: "create_job",
        })
        .inc();
    metrics
        .duration
        .get_or_create(&ResultLabels { result: "ok" })
        .observe(0.1);
    metrics
        .notifications
        .get_or_create(&NotificationLabels { outcome: "failed" })
        .inc();
    metrics
        .notification_attempts
        .get_or_create(&AttemptLabels { result: "connect" })
        .inc();
    let _counting = metrics.count_releases(|| Census {
        in_flight: [("upgrade", 1)].into(),
        ready: [(("False", "RollbackFailed".to_string()), 1)].into(),
        stalled: vec![(
            ("apps".into(), "meet".into(), "RollbackFailed".into()),
            1.8e9,
        )],
    });
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.encode().lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let labels = labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty());
        names.entry(name.to_string()).or_default().extend(
            labels
                .filter_map(|p| p.split_once('='))
                .map(|(k, _)| k.to_string()),
        );
    }
    names
}

/// The metrics a PromQL expression selects, each with the labels its matchers name.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            // A string literal (a label value): skipped, escapes included.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if !name.starts_with("apprelease_") {
                continue;
            }
            let mut labels = Vec::new();
            if chars.get(i) == Some(&'{') {
                let end = i + chars[i..]
                    .iter()
                    .position(|c| *c == '}')
                    .expect("closed selector");
                let inside: String = chars[i + 1..end].iter().collect();
                for matcher in inside.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let label = matcher
                        .split(['=', '!', '~'])
                        .next()
                        .unwrap()
                        .trim()
                        .to_string();
                    labels.push(label);
                }
                i = end + 1;
            }
            found.push((name, labels));
        } else {
            i += 1;
        }
    }
    found
}

/// Parentheses, brackets and braces balance outside string literals.
fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in expr.chars() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && !in_string
}

/// Checks one expression of `place` against the registry.
fn check(place: &str, expr: &str, exposed: &BTreeMap<String, BTreeSet<String>>) {
    assert!(balanced(expr), "{place}: unbalanced: {expr}");
    let used = selectors(expr);
    assert!(!used.is_empty(), "{place}: no operator metric in {expr}");
    for (name, labels) in used {
        let Some(known) = exposed.get(&name) else {
            panic!(
                "{place}: {name} is not a metric of the operator (it has {:?})",
                exposed.keys()
            );
        };
        for label in labels {
            assert!(
                known.contains(&label),
                "{place}: {name} has no label {label} ({known:?})"
            );
        }
    }
}

#[test]
fn the_dashboard_uses_only_the_operators_metrics() {
    let exposed = exposed();
    let text = read("manifests/integrations/grafana/dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(dashboard["uid"], "apprelease-operator");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource"]);
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a title");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expr");
            assert!(target["refId"].is_string(), "{title}");
            check(title, expr, &exposed);
            used.extend(selectors(expr).into_iter().map(|(name, _)| name));
        }
    }
    // Each family of the registry has a panel.
    let families: BTreeSet<String> = exposed
        .keys()
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_string()
        })
        .collect();
    let shown: BTreeSet<String> = used
        .iter()
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_string()
        })
        .collect();
    let missing: Vec<&String> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn the_alerts_use_only_the_operators_metrics() {
    let exposed = exposed();
    let docs = yaml("manifests/integrations/prometheus/rules.yaml");
    assert_eq!(docs.len(), 1);
    let rule = &docs[0];
    assert_eq!(
        (rule["apiVersion"].as_str(), rule["kind"].as_str()),
        (Some("monitoring.coreos.com/v1"), Some("PrometheusRule"))
    );
    let mut alerts = Vec::new();
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("an alert name");
            let expr = rule["expr"].as_str().expect("an expr");
            check(alert, expr, &exposed);
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["warning", "critical"].contains(&severity),
                "{alert}: severity {severity:?}"
            );
            for key in ["summary", "description"] {
                assert!(rule["annotations"][key].is_string(), "{alert}: {key}");
            }
            alerts.push(alert.to_string());
        }
    }
    assert_eq!(
        alerts,
        [
            "AppReleaseUpgradeFailed",
            "AppReleaseRollbackFailed",
            "AppReleaseStalled",
            "AppReleaseReconcileErrors",
            "AppReleaseNoLeader"
        ]
    );
}

#[test]
fn the_service_monitor_selects_the_operators_service() {
    let monitor = &yaml("manifests/integrations/prometheus/servicemonitor.yaml")[0];
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let service = &yaml("manifests/service.yaml")[0];
    let kustomization = &yaml("manifests/kustomization.yaml")[0];
    // The Service gets its labels, and its namespace, from the kustomization.
    let labels = &kustomization["labels"][0]["pairs"];
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[key], value, "{key}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        kustomization["namespace"]
    );
    let port = &monitor["spec"]["endpoints"][0]["port"];
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| &p["name"] == port),
        "the Service has a port named {port}"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_checks_see_unknown_metrics_and_labels() {
    let exposed = exposed();
    assert!(exposed.contains_key("apprelease_upgrades_total"));
    assert_eq!(
        selectors(r#"sum(rate(apprelease_x_total{a="apprelease_y", b!~"c"}[5m])) / apprelease_z"#),
        [
            (
                "apprelease_x_total".to_string(),
                vec!["a".to_string(), "b".to_string()]
            ),
            ("apprelease_z".to_string(), vec![])
        ]
    );
    assert!(!balanced("sum(rate(x[5m])"));
    let unknown = std::panic::catch_unwind(|| check("t", "apprelease_nope", &exposed));
    assert!(unknown.is_err());
    let label =
        std::panic::catch_unwind(|| check("t", r#"apprelease_upgrades_total{step="x"}"#, &exposed));
    assert!(label.is_err());
}
