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

/// Orders two version tags when both read as dotted numbers — an optional `v`, then `1.2.3`
/// with any number of parts, optionally `-suffix` (a pre-release, lower than the release) —
/// which is enough to tell a downgrade. None when either is not such a version, or both are
/// pre-releases of the same numbers.
pub fn compare(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    fn parse(tag: &str) -> Option<(Vec<u64>, Option<&str>)> {
        let tag = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let (core, pre) = match tag.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (tag, None),
        };
        let numbers = core
            .split('.')
            .map(|part| part.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some((numbers, pre))
    }
    let ((mut x, x_pre), (mut y, y_pre)) = (parse(a)?, parse(b)?);
    let len = x.len().max(y.len());
    x.resize(len, 0);
    y.resize(len, 0);
    match x.cmp(&y) {
        std::cmp::Ordering::Equal => match (x_pre, y_pre) {
            (None, None) => Some(std::cmp::Ordering::Equal),
            (Some(_), None) => Some(std::cmp::Ordering::Less),
            (None, Some(_)) => Some(std::cmp::Ordering::Greater),
            (Some(p), Some(q)) => (p == q).then_some(std::cmp::Ordering::Equal),
        },
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_dotted_versions_and_gives_up_on_the_rest() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("1.0.0", "1.1.0", Some(Less)),
            ("1.10", "1.9", Some(Greater)),
            ("v2", "2.0.0", Some(Equal)),
            ("1.36.1", "1.36.0", Some(Greater)),
            ("1.0.0-rc.1", "1.0.0", Some(Less)),
            ("1.0.0", "0.9.9-beta", Some(Greater)),
            ("1.0.0-rc.1", "1.0.0-rc.2", None),
            ("latest", "1.0", None),
            ("2024.05.01", "2024.06.01", Some(Less)),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
        }
    }

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
