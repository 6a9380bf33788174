//! The CRD YAML, generated from the Rust types; `crds/appreleases.yaml` is this output.

use kube::CustomResourceExt;

use crate::api::AppRelease;

/// The CustomResourceDefinition of AppRelease as YAML.
pub fn yaml() -> String {
    let crd = AppRelease::crd();
    // Serializing a CRD built from our own types cannot fail.
    serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML")
}
