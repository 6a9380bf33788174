//! Parsing request paths into what they address.

/// A path under `/api/v1` or `/apis/<group>/<version>` that names resources.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`), if any.
    pub subresource: Option<String>,
}

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/readyz`, `/livez`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion(String, String),
    /// `/openapi/v3`.
    OpenApiRoot,
    /// `/openapi/v3/<api/v1 | apis/g/v>`.
    OpenApiGroupVersion(String, String),
    /// A resource path.
    Resource(ResourcePath),
    /// `/sim/...` control endpoints.
    Control(String),
    /// Anything else.
    Unknown,
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    match rest.as_slice() {
        [plural, tail @ ..] if tail.len() <= 2 => Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace,
            name: tail.first().map(|s| s.to_string()),
            subresource: tail.get(1).map(|s| s.to_string()),
        }),
        _ => Route::Unknown,
    }
}

/// Classifies a request path.
pub fn parse(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::GroupVersion(String::new(), version.to_string()),
        ["apis", group, version] => Route::GroupVersion(group.to_string(), version.to_string()),
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", "api", version] => {
            Route::OpenApiGroupVersion(String::new(), version.to_string())
        }
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiGroupVersion(group.to_string(), version.to_string())
        }
        ["sim", rest @ ..] => Route::Control(rest.join("/")),
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths_are_split_into_their_parts() {
        let Route::Resource(p) = parse("/apis/apps/v1/namespaces/ns1/deployments/web/scale") else {
            panic!("not a resource path")
        };
        assert_eq!(
            (p.group.as_str(), p.plural.as_str(), p.namespace.as_deref()),
            ("apps", "deployments", Some("ns1"))
        );
        assert_eq!(
            (p.name.as_deref(), p.subresource.as_deref()),
            (Some("web"), Some("scale"))
        );
        let Route::Resource(ns) = parse("/api/v1/namespaces/ns1/status") else {
            panic!("not a resource path")
        };
        assert_eq!(
            (
                ns.plural.as_str(),
                ns.name.as_deref(),
                ns.subresource.as_deref()
            ),
            ("namespaces", Some("ns1"), Some("status"))
        );
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(parse("/nothing/here"), Route::Unknown);
    }
}
