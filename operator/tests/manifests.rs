//! The shipped manifests: the example is a valid AppRelease, and the kustomize base renders
//! with the generated CRD and the permissions the operator uses.

use std::process::Command;

use apprelease_operator::api::{AppRelease, validate::validate};
use serde_json::Value;

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).expect("valid YAML")
}

#[test]
fn example_app_release_is_valid() {
    let text = std::fs::read_to_string(repo("manifests/examples/meet.yaml")).unwrap();
    let docs = documents(&text);
    let release = docs
        .iter()
        .find(|d| d["kind"] == "AppRelease")
        .expect("an AppRelease");
    let release: AppRelease =
        serde_json::from_value(release.clone()).expect("parses as AppRelease");
    assert_eq!(
        validate(&release.spec),
        vec![],
        "the example passes validation"
    );
    let workloads: Vec<(&str, &str)> = docs
        .iter()
        .filter_map(|d| Some((d["kind"].as_str()?, d["metadata"]["name"].as_str()?)))
        .collect();
    for target in &release.spec.targets {
        assert!(
            workloads.contains(&(target.kind().as_str(), target.name())),
            "{} {} is in the example",
            target.kind(),
            target.name()
        );
    }
    assert!(
        release.spec.backup.is_some()
            && release.spec.migration.is_some()
            && release.spec.verify.is_some()
    );
}

fn kustomize(dir: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .args(["kustomize", &repo(dir)])
        .output()
        .expect("kubectl is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    documents(&String::from_utf8(output.stdout).unwrap())
}

/// overlays/namespaced/: the base's rules as a Role in `apps`, bound there, no cluster-wide
/// grant, and the operator told to watch `apps` only.
#[test]
fn namespaced_overlay_grants_the_same_rules_in_one_namespace() {
    let base = kustomize("manifests");
    let docs = kustomize("overlays/namespaced");
    let named = |docs: &[Value], kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .cloned()
    };
    let find = |docs: &[Value], kind: &str| named(docs, kind, "apprelease-operator");
    assert!(find(&docs, "ClusterRole").is_none() && find(&docs, "ClusterRoleBinding").is_none());
    let role = find(&docs, "Role").expect("a Role");
    assert_eq!(role["metadata"]["namespace"], "apps");
    assert_eq!(role["rules"], find(&base, "ClusterRole").unwrap()["rules"]);
    // The Lease stays in the operator's own namespace, as in the base.
    let lease_role = named(&docs, "Role", "apprelease-operator-leader-election");
    assert_eq!(
        lease_role,
        named(&base, "Role", "apprelease-operator-leader-election")
    );
    assert_eq!(
        lease_role.expect("the Lease's Role")["metadata"]["namespace"],
        "apprelease-system"
    );
    let binding = find(&docs, "RoleBinding").expect("a RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "apps");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        find(&base, "ClusterRoleBinding").unwrap()["subjects"]
    );
    let args = |docs: &[Value]| {
        find(docs, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut expected = args(&base);
    expected.push("--namespace=apps".into());
    assert_eq!(args(&docs), expected);
}

#[test]
fn kustomize_base_renders_the_operator() {
    let docs = kustomize("manifests");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let mut crds: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    crds.sort();
    assert_eq!(
        crds,
        [
            "appreleasebackups.apprelease.io",
            "appreleaserestores.apprelease.io",
            "appreleases.apprelease.io"
        ]
    );
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let allows = |resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|rule| {
            rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == resource)
                && rule["verbs"].as_array().unwrap().iter().any(|v| v == verb)
        })
    };
    for (resource, verb) in [
        ("appreleases", "watch"),
        ("appreleases/status", "patch"),
        ("appreleasebackups", "watch"),
        ("appreleaserestores", "watch"),
        ("appreleasebackups/status", "patch"),
        ("appreleaserestores/status", "patch"),
        ("deployments", "patch"),
        ("deployments/scale", "patch"),
        ("statefulsets", "watch"),
        ("statefulsets", "patch"),
        ("statefulsets/scale", "patch"),
        ("jobs", "create"),
        ("pods", "list"),
        ("events", "create"),
        ("secrets", "get"),
    ] {
        assert!(
            allows(resource, verb),
            "the ClusterRole must allow {verb} on {resource}"
        );
    }
    // `patch` on appreleases is for the finalizer only; that the patch touches nothing else
    // is shown request by request in the operator's k8s tests.
    assert!(
        allows("appreleases", "patch") && !allows("appreleases", "update"),
        "the operator patches its finalizer and never replaces an AppRelease"
    );
    assert!(
        !allows("persistentvolumeclaims", "delete"),
        "volumes are never deleted"
    );
    // The one deletion: a StatefulSet pod stuck on a failed version, during a rollback.
    let deletable: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| {
            rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "delete" || v == "deletecollection" || v == "*")
        })
        .flat_map(|rule| {
            rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r.as_str())
        })
        .collect();
    assert_eq!(deletable, ["pods"], "only pods are ever deleted");
    assert!(
        !allows("secrets", "list") && !allows("secrets", "watch"),
        "a webhook's Secret is read by name; the operator never lists Secrets"
    );
    assert!(
        !allows("leases", "get") && !allows("leases", "update"),
        "Leases only in the operator's namespace, by the Role"
    );
}

/// Two replicas, one writer: the Lease permissions in the operator's namespace only, the
/// replica's identity from the downward API, replicas spread over nodes, one always left by
/// a drain, and a grace period that covers the graceful shutdown.
#[test]
fn kustomize_base_runs_two_replicas_that_elect_a_leader() {
    let output = Command::new("kubectl")
        .args(["kustomize", &repo("manifests")])
        .output()
        .expect("kubectl is installed");
    assert!(output.status.success());
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    let of_kind =
        |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };

    let [role] = of_kind("Role")[..] else {
        panic!("one Role")
    };
    assert_eq!(role["metadata"]["namespace"], "apprelease-system");
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                            "verbs": ["get", "create", "update"]}])
    );
    let [binding] = of_kind("RoleBinding")[..] else {
        panic!("one RoleBinding")
    };
    assert_eq!(binding["metadata"]["namespace"], "apprelease-system");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "apprelease-operator",
                            "namespace": "apprelease-system"}])
    );

    let [deployment] = of_kind("Deployment")[..] else {
        panic!("one Deployment")
    };
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_ne!(
        spec["strategy"]["type"], "Recreate",
        "a rolling update keeps a replica"
    );
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "POD_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"),
        "the identity in the Lease is the pod's name: {env:?}"
    );
    assert!(
        !container["args"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .is_some_and(|a| a.starts_with("--leader-election"))),
        "leader election is on by default"
    );
    let labels = &spec["template"]["metadata"]["labels"];
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        anti["labelSelector"]["matchLabels"]["app.kubernetes.io/name"],
        labels["app.kubernetes.io/name"]
    );
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown = apprelease_operator::cli::DRAIN_LIMIT + apprelease_operator::cli::RELEASE_LIMIT;
    assert!(
        grace > shutdown.as_secs(),
        "terminationGracePeriodSeconds {grace} must cover the drain and the release ({shutdown:?})"
    );

    let [budget] = of_kind("PodDisruptionBudget")[..] else {
        panic!("one PodDisruptionBudget")
    };
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        labels["app.kubernetes.io/name"]
    );
}
