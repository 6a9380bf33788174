//! The checked-in CRD must be exactly what the Rust types produce.

use apprelease_operator::crd;

#[test]
fn checked_in_crd_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/appreleases.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/appreleases.yaml exists");
    assert!(
        checked_in == crd::yaml(),
        "crds/appreleases.yaml is stale: regenerate it with `cargo run -p apprelease-operator -- crd > crds/appreleases.yaml`"
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
