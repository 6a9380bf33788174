//! The krew manifest stays in step with the package: its version, one archive per platform
//! under the repository's releases, the binary's name.

use serde_json::Value;

#[test]
fn the_krew_manifest_matches_the_package() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/krew/apprelease.yaml");
    let manifest: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    // `kubectl krew install apprelease` gives `kubectl apprelease`.
    assert_eq!(manifest["metadata"]["name"], "apprelease");
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["spec"]["version"], version.as_str());

    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    let mut seen = Vec::new();
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        let (os, arch) = (
            labels["os"].as_str().unwrap(),
            labels["arch"].as_str().unwrap(),
        );
        seen.push(format!("{os}/{arch}"));
        let uri = format!(
            "{}/releases/download/{version}/kubectl-apprelease-{version}-{os}-{arch}.tar.gz",
            env!("CARGO_PKG_REPOSITORY")
        );
        assert_eq!(p["uri"], uri.as_str(), "{os}/{arch}");
        assert_eq!(p["bin"], "kubectl-apprelease", "{os}/{arch}");
        assert!(p["sha256"].is_string(), "{os}/{arch}: the release fills it");
        assert_eq!(p["files"][0]["from"], "kubectl-apprelease");
    }
    seen.sort();
    assert_eq!(
        seen,
        ["darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"]
    );
}
