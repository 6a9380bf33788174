//! Wording shared by the planner's messages.

/// A version for messages: an unknown one is said so.
pub fn display(version: &str) -> &str {
    if version.is_empty() {
        "an unknown version"
    } else {
        version
    }
}
