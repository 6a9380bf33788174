//! The Helm chart (charts/apprelease-operator): its CRDs are the generated ones, `helm lint`
//! passes, and `helm template` renders what `kubectl kustomize` renders from manifests/ (with
//! the default values) and from overlays/namespaced/ (with `watchNamespace`), but for the
//! differences [`normalize`] lists.
//!
//! They run the real helm: `APPRELEASE_HELM_BIN`, built by `testbed/build.sh --helm`
//! (scripts/test.sh builds and exports it). Without it they fail saying so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

const CHART: &str = "charts/apprelease-operator";

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("valid YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn helm_binary() -> PathBuf {
    match std::env::var_os("APPRELEASE_HELM_BIN") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "APPRELEASE_HELM_BIN is not set: build helm with `bash testbed/build.sh --helm` \
             (about 7 minutes the first time on two cores) and set APPRELEASE_HELM_BIN to \
             the helm in the directory it prints last; scripts/test.sh does both"
        ),
    }
}

/// Runs helm with `args` from the repository root, with its own scratch home (no user
/// config or repositories), and returns its stdout.
fn helm(args: &[&str]) -> String {
    let home = std::env::temp_dir().join(format!("apprelease-chart-{}", std::process::id()));
    let output = Command::new(helm_binary())
        .args(args)
        .current_dir(repo(""))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("APPRELEASE_HELM_BIN runs");
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `helm template` of the chart as release `apprelease-operator` in `apprelease-system` (the
/// names and namespace manifests/ uses), CRDs included, with these `--set` values.
fn template(values: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "apprelease-operator",
        CHART,
        "--namespace",
        "apprelease-system",
        "--include-crds",
    ];
    for value in values {
        args.extend(["--set", value]);
    }
    documents(&helm(&args))
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

fn key(doc: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&doc["kind"]),
        text(&doc["metadata"]["namespace"]),
        text(&doc["metadata"]["name"]),
    )
}

fn by_key(docs: Vec<Value>) -> BTreeMap<(String, String, String), Value> {
    docs.into_iter().map(|d| (key(&d), d)).collect()
}

/// Asserts that `chart` has every label of `kustomize` (a map, possibly absent) and removes
/// both: Helm's own labels (`helm.sh/chart`, `app.kubernetes.io/instance`, …) are the
/// chart's only.
fn take_labels(chart: &mut Value, kustomize: &mut Value, what: &str) {
    let theirs = kustomize.take();
    let ours = chart.take();
    for (name, value) in theirs.as_object().into_iter().flatten() {
        assert_eq!(
            ours.get(name),
            Some(value),
            "{what}: the chart lacks the label {name}={value}"
        );
    }
}

/// The deliberate differences between the chart and the kustomize base, removed so that the
/// rest can be compared whole:
///
/// - labels: the chart adds Helm's standard labels (and its CRDs, from crds/, are not
///   templated, so they carry none); every label of the base is on the chart's objects;
/// - selectors (Deployment, Service, PodDisruptionBudget) also match `app.kubernetes.io/instance`, so that two
///   releases of the chart never select each other's pods;
/// - so does the pod anti-affinity's selector;
/// - the chart sets `imagePullPolicy` (a value; IfNotPresent, the API server's default for a
///   tagged image);
/// - it gives the operator `--lease-name=<release>`, so that two releases in one namespace
///   never share a Lease (the base's is the default name, `apprelease-operator`).
///
/// The Namespace object is the base's only (Helm's way is `--create-namespace`); the caller
/// checks that.
fn normalize(chart: &mut Value, kustomize: &mut Value) {
    let what = format!("{:?}", key(kustomize));
    if kustomize["kind"] == "CustomResourceDefinition" {
        kustomize["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
    }
    take_labels(
        &mut chart["metadata"]["labels"],
        &mut kustomize["metadata"]["labels"],
        &what,
    );
    let instance = "app.kubernetes.io/instance";
    match kustomize["kind"].as_str() {
        Some("Deployment") => {
            let selector = chart["spec"]["selector"]["matchLabels"]
                .as_object_mut()
                .unwrap();
            assert_eq!(selector[instance], "apprelease-operator");
            selector.remove(instance);
            take_labels(
                &mut chart["spec"]["template"]["metadata"]["labels"],
                &mut kustomize["spec"]["template"]["metadata"]["labels"],
                &format!("{what} pod template"),
            );
            let pod = &mut chart["spec"]["template"]["spec"];
            let term = &mut pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0]["podAffinityTerm"];
            let selector = term["labelSelector"]["matchLabels"]
                .as_object_mut()
                .unwrap();
            assert_eq!(selector[instance], "apprelease-operator");
            selector.remove(instance);
            let container = &mut pod["containers"][0];
            assert_eq!(container["imagePullPolicy"], "IfNotPresent");
            container.as_object_mut().unwrap().remove("imagePullPolicy");
            let args = container["args"].as_array_mut().unwrap();
            let lease = args
                .iter()
                .position(|a| a == "--lease-name=apprelease-operator")
                .expect("the chart names the release's Lease");
            args.remove(lease);
        }
        Some("PodDisruptionBudget") => {
            let selector = chart["spec"]["selector"]["matchLabels"]
                .as_object_mut()
                .unwrap();
            assert_eq!(selector[instance], "apprelease-operator");
            selector.remove(instance);
        }
        Some("Service") => {
            let selector = chart["spec"]["selector"].as_object_mut().unwrap();
            assert_eq!(selector[instance], "apprelease-operator");
            selector.remove(instance);
        }
        _ => {}
    }
}

/// Every object kustomize renders from `dir` is rendered by the chart with `values`, the
/// same but for [`normalize`]'s differences, and the chart renders nothing else.
fn assert_same_objects(dir: &str, values: &[&str]) {
    let mut theirs = by_key(kustomize(dir));
    let mut ours = by_key(template(values));
    let namespace = (
        "Namespace".into(),
        String::new(),
        "apprelease-system".into(),
    );
    assert!(
        theirs.remove(&namespace).is_some(),
        "{dir} creates the namespace"
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "helm template {values:?} and kubectl kustomize {dir} render the same objects (kind, namespace, name)"
    );
    for (key, theirs) in &mut theirs {
        let ours = ours.get_mut(key).unwrap();
        normalize(ours, theirs);
        assert!(
            ours == theirs,
            "{key:?}: helm template {values:?} differs from kubectl kustomize {dir}\n\
             chart:\n{ours:#}\nkustomize:\n{theirs:#}"
        );
    }
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let generated = std::fs::read_to_string(repo("crds/appreleases.yaml")).unwrap();
    let chart = std::fs::read_to_string(repo(&format!("{CHART}/crds/appreleases.yaml")))
        .expect("the chart has its CRDs");
    assert!(
        chart == generated,
        "{CHART}/crds/appreleases.yaml differs from crds/appreleases.yaml: regenerate both with \
         `cargo run -p apprelease-operator -- crd | tee crds/appreleases.yaml {CHART}/crds/appreleases.yaml`"
    );
}

#[test]
fn chart_version_is_the_operators() {
    let chart = documents(&std::fs::read_to_string(repo(&format!("{CHART}/Chart.yaml"))).unwrap());
    assert_eq!(chart[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart[0]["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn helm_lint_passes() {
    for values in [
        vec![],
        vec!["watchNamespace=apps"],
        vec!["replicas=1", "serviceMonitor.enabled=true"],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        for value in &values {
            args.extend(["--set", value]);
        }
        let out = helm(&args);
        assert!(out.contains("0 chart(s) failed"), "{values:?}: {out}");
    }
}

#[test]
fn helm_template_renders_what_kustomize_renders() {
    assert_same_objects("manifests", &[]);
}

/// One namespace: a Role and RoleBinding there, no ClusterRole (the CRDs stay), and the
/// operator told to watch it — what overlays/namespaced/ renders.
#[test]
fn helm_template_with_a_watch_namespace_renders_a_role_there() {
    let docs = template(&["watchNamespace=apps"]);
    let kinds: Vec<(String, String, String)> = docs.iter().map(key).collect();
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(
            !kinds.iter().any(|(k, _, _)| k == kind),
            "no {kind} when watching one namespace: {kinds:?}"
        );
    }
    for kind in ["Role", "RoleBinding"] {
        assert!(
            kinds.contains(&(kind.into(), "apps".into(), "apprelease-operator".into())),
            "a {kind} in apps: {kinds:?}"
        );
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, _, _)| k == "CustomResourceDefinition")
            .count(),
        3
    );
    let cluster_wide = template(&[]);
    let rules = |docs: &[Value], kind: &str| {
        docs.iter().find(|d| d["kind"] == kind).unwrap()["rules"].clone()
    };
    assert_eq!(
        rules(&docs, "Role"),
        rules(&cluster_wide, "ClusterRole"),
        "the same permissions, in one namespace"
    );
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--namespace=apps"),
        "{args}"
    );
    assert_same_objects("overlays/namespaced", &["watchNamespace=apps"]);
}

#[test]
fn a_pdb_only_with_more_than_one_replica_and_a_service_monitor_on_request() {
    let has = |docs: &[Value], kind: &str| docs.iter().any(|d| d["kind"] == kind);
    let one = template(&["replicas=1"]);
    assert!(
        !has(&one, "PodDisruptionBudget"),
        "a PDB would block every drain"
    );
    assert!(!has(&template(&[]), "ServiceMonitor"));
    let two = template(&["serviceMonitor.enabled=true"]);
    let pdb = two
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .expect("a PDB with the default 2 replicas");
    let deployment = two.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let monitor = two
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    let service = two.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    for (name, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][name], value);
    }
}
