//! The checked-in CRD must be exactly what the Rust types produce.

use apprelease_operator::crd;

#[test]
fn checked_in_crd_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/appreleases.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/appreleases.yaml exists");
    assert!(
        checked_in == crd::yaml(),
        "crds/appreleases.yaml is stale: regenerate it and the chart's copy with `cargo run -p \
         apprelease-operator -- crd | tee crds/appreleases.yaml \
         charts/apprelease-operator/crds/appreleases.yaml >/dev/null`"
    );
}

#[test]
fn crd_stays_small_enough_for_client_side_apply() {
    // `kubectl apply` (client-side) stores the object in an annotation limited to 256 KiB.
    assert!(
        crd::yaml().len() < 128 * 1024,
        "the CRD grew to {} bytes",
        crd::yaml().len()
    );
}

/// The API server estimates the cost of every CEL rule from the bounds of what it reads and
/// refuses the whole CRD when a rule (or their total) exceeds its budget; an unbounded string
/// or list under a rule costs as much as the largest request allows. Every string a rule
/// reads has a maxLength and every list one; the real control plane checks the actual budget
/// in the end-to-end suite, where this was first seen (the simulator estimates no costs).
#[test]
fn every_value_a_cel_rule_reads_is_bounded() {
    fn walk(path: &str, schema: &serde_json::Value, unbounded: &mut Vec<String>) {
        let has_rules = schema
            .get("x-kubernetes-validations")
            .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()));
        let kind = schema.get("type").and_then(|t| t.as_str());
        if has_rules
            && ((kind == Some("string")
                && schema.get("maxLength").is_none()
                && schema.get("enum").is_none())
                || (kind == Some("array") && schema.get("maxItems").is_none()))
        {
            unbounded.push(path.to_string());
        }
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in properties {
                walk(&format!("{path}.{name}"), child, unbounded);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, unbounded);
        }
    }
    for crd in crd::all() {
        let crd = serde_json::to_value(&crd).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let mut unbounded = Vec::new();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            walk("", &version["schema"]["openAPIV3Schema"], &mut unbounded);
        }
        assert!(
            unbounded.is_empty(),
            "{name}: unbounded under a CEL rule: {unbounded:?}"
        );
    }
}
