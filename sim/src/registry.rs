//! Which resources the server knows: the built-in kinds, plus every served version of every
//! CustomResourceDefinition stored in the cluster (looked up on each request, so a CRD is
//! served as soon as it is created and gone as soon as it is deleted).

use std::sync::{Arc, LazyLock};

use serde_json::Value;

use crate::store::Store;

/// The group/plural of CustomResourceDefinitions.
pub const CRD_GROUP: &str = "apiextensions.k8s.io";

/// A printer column for Table output.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header (`READY`).
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    /// JSONPath into the object (`.status.readyReplicas`); built-in kinds may also use a
    /// template of counts (`{.status.readyReplicas}/{.spec.replicas}`) for READY-style cells.
    pub json_path: String,
    /// 0 shows by default, higher only with `-o wide`.
    pub priority: i64,
    /// Column description.
    pub description: String,
}

/// Everything the API layer needs to know about one resource.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Served versions, preferred (storage) first.
    pub versions: Vec<String>,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a separate subresource (then main writes keep status).
    pub status_subresource: bool,
    /// Whether `/scale` is served (maps to `spec.replicas`).
    pub scale_subresource: bool,
    /// Extra printer columns after NAME.
    pub columns: Vec<Column>,
    /// The CRD's structural schema (list types for server-side apply, pruning, validation);
    /// shared, because resource types are cloned on every request.
    pub schema: Option<Arc<Value>>,
    /// Whether this is a built-in kind (strategic merge patch only works on those).
    pub builtin: bool,
}

impl ResourceType {
    /// The key objects are stored under: `plural.group` (`deployments.apps`, `pods`).
    pub fn key(&self) -> String {
        // events.k8s.io Events share storage with core Events (see `convert`).
        if self.group.is_empty() || (self.group == "events.k8s.io" && self.plural == "events") {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `apps/v1` or `v1` for the given version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// Whether objects of this kind carry `metadata.generation` (those with a spec do).
    pub fn has_generation(&self) -> bool {
        !self.builtin
            || matches!(
                self.kind.as_str(),
                "Deployment"
                    | "StatefulSet"
                    | "ReplicaSet"
                    | "Job"
                    | "CustomResourceDefinition"
                    | "Pod"
            )
    }

    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_string(),
            versions: vec![version.to_string()],
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status_subresource: false,
            scale_subresource: false,
            columns: vec![],
            schema: None,
            builtin: true,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn in_all(mut self) -> Self {
        self.categories = vec!["all".to_string()];
        self
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    fn with_scale(mut self) -> Self {
        self.scale_subresource = true;
        self
    }

    fn cols(mut self, cols: &[(&str, &str, &str)]) -> Self {
        self.columns = cols
            .iter()
            .map(|(name, type_, path)| Column {
                name: name.to_string(),
                type_: type_.to_string(),
                json_path: path.to_string(),
                priority: 0,
                description: String::new(),
            })
            .collect();
        self
    }
}

const AGE: (&str, &str, &str) = ("Age", "date", ".metadata.creationTimestamp");

static BUILTINS: LazyLock<Vec<ResourceType>> = LazyLock::new(make_builtins);

/// The built-in kinds this server serves.
pub fn builtins() -> &'static [ResourceType] {
    &BUILTINS
}

fn make_builtins() -> Vec<ResourceType> {
    vec![
        ResourceType::builtin("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .with_status()
            .cols(&[("Status", "string", ".status.phase"), AGE]),
        ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        ResourceType::builtin("", "v1", "Secret", "secrets", true)
            .cols(&[("Type", "string", ".type"), AGE]),
        ResourceType::builtin("", "v1", "Service", "services", true)
            .short(&["svc"])
            .in_all()
            .with_status()
            .cols(&[
                ("Type", "string", ".spec.type"),
                ("Cluster-IP", "string", ".spec.clusterIP"),
                AGE,
            ]),
        ResourceType::builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
        .short(&["pvc"])
        .with_status()
        .cols(&[("Status", "string", ".status.phase"), AGE]),
        ResourceType::builtin("", "v1", "Pod", "pods", true)
            .short(&["po"])
            .in_all()
            .with_status()
            .cols(&[
                ("Status", "string", ".status.phase"),
                ("Node", "string", ".spec.nodeName"),
                AGE,
            ]),
        ResourceType::builtin("", "v1", "Event", "events", true)
            .short(&["ev"])
            .cols(&[
                ("Last Seen", "date", ".lastTimestamp"),
                ("Type", "string", ".type"),
                ("Reason", "string", ".reason"),
                (
                    "Object",
                    "string",
                    "{.involvedObject.kind}/{.involvedObject.name}",
                ),
                ("Message", "string", ".message"),
            ]),
        ResourceType::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        ResourceType::builtin("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .in_all()
            .with_status()
            .with_scale()
            .cols(&[
                (
                    "Ready",
                    "string",
                    "{.status.readyReplicas}/{.spec.replicas}",
                ),
                ("Up-to-date", "integer", ".status.updatedReplicas"),
                ("Available", "integer", ".status.availableReplicas"),
                AGE,
            ]),
        ResourceType::builtin("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .in_all()
            .with_status()
            .with_scale()
            .cols(&[
                (
                    "Ready",
                    "string",
                    "{.status.readyReplicas}/{.spec.replicas}",
                ),
                AGE,
            ]),
        ResourceType::builtin("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .in_all()
            .with_status()
            .with_scale()
            .cols(&[
                ("Desired", "integer", ".spec.replicas"),
                ("Current", "integer", ".status.replicas"),
                ("Ready", "integer", ".status.readyReplicas"),
                AGE,
            ]),
        // Stored and served; no autoscaling is simulated (nor, without a metrics server, done
        // by the real control plane of the tests).
        ResourceType::builtin(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"]),
        ResourceType::builtin("batch", "v1", "Job", "jobs", true)
            .in_all()
            .with_status()
            .cols(&[
                (
                    "Status",
                    "string",
                    ".status.conditions[?(@.status==\"True\")].type",
                ),
                (
                    "Completions",
                    "string",
                    "{.status.succeeded}/{.spec.completions}",
                ),
                ("Failed", "integer", ".status.failed"),
                AGE,
            ]),
        // RBAC objects are stored so manifests apply; nothing enforces them.
        ResourceType::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        // Stored so the operator's manifests apply (nothing evicts pods here).
        ResourceType::builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .short(&["pdb"]),
        ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true)
            .cols(&[("Holder", "string", ".spec.holderIdentity"), AGE]),
        ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true)
            .short(&["ev"])
            .cols(&[
                ("Last Seen", "date", ".deprecatedLastTimestamp"),
                ("Type", "string", ".type"),
                ("Reason", "string", ".reason"),
                ("Object", "string", "{.regarding.kind}/{.regarding.name}"),
                ("Note", "string", ".note"),
            ]),
        ResourceType::builtin(
            CRD_GROUP,
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .with_status()
        .cols(&[("Created At", "date", ".metadata.creationTimestamp")]),
    ]
}

/// A built-in kind by name (`"Pod"`); panics on a kind this module does not define, which
/// is a programming error in the caller.
pub fn builtin(kind: &str) -> ResourceType {
    builtins()
        .iter()
        .find(|t| t.kind == kind && (t.group.is_empty() || kind != "Event"))
        .cloned()
        .unwrap_or_else(|| panic!("{kind} is not a built-in kind"))
}

/// Builds the resource type a stored CRD object defines, if it is well-formed.
pub fn from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let str_list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions: Vec<&Value> = spec
        .get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .collect();
    // The storage version is preferred in discovery; the rest keep their order.
    let mut ordered = versions.clone();
    ordered.sort_by_key(|v| !v.get("storage").and_then(Value::as_bool).unwrap_or(false));
    let first = ordered.first()?;
    let columns = first
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    type_: c["type"].as_str().unwrap_or("string").to_string(),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    description: c["description"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        // Without printer columns a CRD table shows NAME and AGE, as on a real server.
        .unwrap_or_else(|| {
            vec![Column {
                name: "Age".into(),
                type_: "date".into(),
                json_path: ".metadata.creationTimestamp".into(),
                priority: 0,
                description: String::new(),
            }]
        });
    let kind = names.get("kind")?.as_str()?.to_string();
    Some(ResourceType {
        group: spec.get("group")?.as_str()?.to_string(),
        versions: ordered
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
            .collect(),
        plural: names.get("plural")?.as_str()?.to_string(),
        singular: names
            .get("singular")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        kind,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        short_names: str_list(names.get("shortNames")),
        categories: str_list(names.get("categories")),
        status_subresource: first.pointer("/subresources/status").is_some(),
        scale_subresource: first.pointer("/subresources/scale").is_some(),
        columns,
        schema: first
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .map(Arc::new),
        builtin: false,
    })
}

/// All resource types currently served: built-ins first, then CRDs.
pub fn all(store: &Store) -> Vec<ResourceType> {
    let mut types = builtins().to_vec();
    types.extend(store.custom_types().iter().cloned());
    types
}

/// Finds the resource served at `group/version/plural`.
pub fn lookup(store: &Store, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    all(store)
        .into_iter()
        .find(|t| t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version))
}
