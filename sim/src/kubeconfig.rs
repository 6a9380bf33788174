//! A kubeconfig pointing at the simulator over plain HTTP, usable unchanged by kubectl and
//! by kube-rs (`Config::from_custom_kubeconfig`, or `KUBECONFIG`), whose connector accepts
//! `http://` servers.

use std::path::Path;

/// The name used for the cluster, user and context entries.
pub const CONTEXT: &str = "apprelease-sim";

/// Kubeconfig YAML for a server URL, with namespace `default`.
pub fn render(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
users:
- name: {CONTEXT}
  user: {{}}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
preferences: {{}}
"
    )
}

/// Writes the kubeconfig to `path` (creating parent directories).
pub fn write(path: &Path, server: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, render(server))
}
