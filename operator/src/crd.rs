//! The CRD YAML, generated from the Rust types; `crds/appreleases.yaml` is this output.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AppRelease, AppReleaseBackup, AppReleaseRestore};

/// Every CustomResourceDefinition the operator serves: AppRelease, and the on-demand
/// AppReleaseBackup and AppReleaseRestore.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        AppRelease::crd(),
        AppReleaseBackup::crd(),
        AppReleaseRestore::crd(),
    ]
}

/// The CustomResourceDefinitions as one YAML stream.
pub fn yaml() -> String {
    all()
        .iter()
        // Serializing a CRD built from our own types cannot fail.
        .map(|crd| serde_saphyr::to_string(crd).expect("the CRD serializes to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}
