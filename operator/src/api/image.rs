//! Image references, split just enough to replace a tag: `registry:5000/team/app:1.2@sha256:…`.

/// The repository part of an image reference, without tag or digest.
pub fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

/// The tag of an image reference, if it has one.
pub fn tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let repo = repository(image);
    without_digest
        .get(repo.len() + 1..)
        .filter(|t| !t.is_empty())
}

/// Whether the reference names a tag or a digest (so it is not a bare repository).
pub fn is_pinned(image: &str) -> bool {
    image.contains('@') || tag(image).is_some()
}

/// `repository:tag`.
pub fn with_tag(repository: &str, tag: &str) -> String {
    format!("{repository}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_repository_and_tag() {
        for (image, repo, tag_) in [
            ("nginx", "nginx", None),
            ("nginx:1.25", "nginx", Some("1.25")),
            (
                "ghcr.io/example/backend:1.2.3",
                "ghcr.io/example/backend",
                Some("1.2.3"),
            ),
            ("localhost:5000/app", "localhost:5000/app", None),
            ("localhost:5000/app:v2", "localhost:5000/app", Some("v2")),
            ("app@sha256:abc", "app", None),
            ("app:1@sha256:abc", "app", Some("1")),
        ] {
            assert_eq!(repository(image), repo, "{image}");
            assert_eq!(tag(image), tag_, "{image}");
        }
    }

    #[test]
    fn pinned_means_tag_or_digest() {
        assert!(is_pinned("a:1"));
        assert!(is_pinned("a@sha256:0"));
        assert!(!is_pinned("registry:5000/a"));
        assert_eq!(with_tag("registry:5000/a", "2"), "registry:5000/a:2");
    }
}
