//! Versions are container image tags: the operator writes `spec.version` as the tag of every
//! target image, so a version is valid exactly when it is a valid tag.

/// The container-tag grammar, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, as used by the OCI
/// distribution spec. The same rule is in the CRD as a CEL rule (see `spec.rs`).
pub const TAG_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// Why a string is not a valid version.
pub fn tag_error(tag: &str) -> Option<String> {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return Some("must not be empty".into());
    };
    if tag.len() > 128 {
        return Some(format!(
            "is {} characters long; at most 128 are allowed",
            tag.len()
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Some(format!(
            "must start with a letter, a digit or '_', not {first:?}"
        ));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!(
            "may contain only letters, digits, '_', '.' and '-', not {bad:?}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_version_tags() {
        for tag in [
            "1.2.3",
            "v2",
            "2024.05.01-rc.1",
            "_internal",
            "latest",
            &"a".repeat(128),
        ] {
            assert_eq!(tag_error(tag), None, "{tag}");
        }
    }

    #[test]
    fn rejects_what_a_registry_rejects() {
        for (tag, why) in [
            ("", "empty"),
            (".1", "start"),
            ("-rc", "start"),
            ("1.2.3+build", "'+'"),
            ("1 2", "' '"),
            ("v1/2", "'/'"),
            ("ü1", "start"),
        ] {
            let err = tag_error(tag).unwrap_or_else(|| panic!("{tag:?} accepted"));
            assert!(err.contains(why), "{tag:?}: {err}");
        }
        assert!(tag_error(&"a".repeat(129)).unwrap().contains("129"));
    }
}
