//! `retry` and `approve`: the annotations the operator reads, as merge patches, and the
//! checks that keep an approval from approving nothing.

use apprelease_operator::api::{APPROVE_ANNOTATION, AppRelease, Approval, RETRY_ANNOTATION};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The merge patch that sets `key` to `value`.
pub fn patch(key: &str, value: &str) -> Value {
    json!({"metadata": {"annotations": {key: value}}})
}

/// The retry annotation's new value: the moment, to the millisecond, so that two retries in
/// one second still differ.
pub fn retry_value(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The retry patch at `now`.
pub fn retry_patch(now: DateTime<Utc>) -> (String, Value) {
    let value = retry_value(now);
    let patch = patch(RETRY_ANNOTATION, &value);
    (value, patch)
}

/// A retry only matters after a failure: say so when nothing failed.
pub fn retry_note(release: &AppRelease) -> Option<String> {
    let failed = release.status.as_ref().and_then(|s| s.failed.as_ref());
    failed.is_none().then(|| {
        "note: no version has failed (status.failed is empty), so the operator has nothing to \
         try again now"
            .to_string()
    })
}

/// Refuses an approval that would approve nothing: the release does not wait for approvals,
/// or `version` is not the one it wants.
pub fn check_approve(release: &AppRelease, version: &str) -> Result<(), String> {
    let name = release.metadata.name.as_deref().unwrap_or_default();
    if release.spec.approval != Approval::Manual {
        return Err(format!(
            "AppRelease {name} has approval: {:?}, so its upgrades start without one and \
             {APPROVE_ANNOTATION} would change nothing; set spec.approval: Manual to require approvals",
            release.spec.approval
        ));
    }
    let wanted = &release.spec.version;
    if version != wanted {
        return Err(format!(
            "AppRelease {name} wants version {wanted} (spec.version), not {version}: an approval \
             of another version approves nothing. Approve {wanted}, or set spec.version to \
             {version} first"
        ));
    }
    Ok(())
}

/// What `retry` and `approve` print once the annotation is set.
pub fn annotated(release: &str, key: &str, value: &str) -> String {
    format!("appreleases.apprelease.io/{release} annotated: {key}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{at, release};

    #[test]
    fn retry_sets_a_fresh_value() {
        let (value, patch) = retry_patch(at(1) + chrono::TimeDelta::milliseconds(250));
        assert_eq!(value, "1970-01-01T00:01:00.250Z");
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {"apprelease.io/retry": "1970-01-01T00:01:00.250Z"}}})
        );
        assert_ne!(
            retry_value(at(1)),
            retry_value(at(1) + chrono::TimeDelta::milliseconds(1))
        );
        assert_eq!(
            annotated("shop", RETRY_ANNOTATION, &value),
            "appreleases.apprelease.io/shop annotated: apprelease.io/retry=1970-01-01T00:01:00.250Z"
        );
    }

    #[test]
    fn retry_notes_when_nothing_failed() {
        let mut r = release();
        assert!(retry_note(&r).unwrap().contains("nothing to try again"));
        r.status.as_mut().unwrap().failed = Some(apprelease_operator::api::FailedVersion {
            version: "1.2.0".into(),
            generation: 2,
            retry: String::new(),
            reason: "RolledBack".into(),
            message: "never ready".into(),
        });
        assert_eq!(retry_note(&r), None);
    }

    #[test]
    fn approve_only_the_wanted_version_of_a_manual_release() {
        let mut r = release();
        assert_eq!(
            check_approve(&r, "1.1.0").unwrap_err(),
            "AppRelease shop has approval: Automatic, so its upgrades start without one and \
             apprelease.io/approve would change nothing; set spec.approval: Manual to require approvals"
        );
        r.spec.approval = Approval::Manual;
        assert_eq!(
            check_approve(&r, "1.2.0").unwrap_err(),
            "AppRelease shop wants version 1.1.0 (spec.version), not 1.2.0: an approval of \
             another version approves nothing. Approve 1.1.0, or set spec.version to 1.2.0 first"
        );
        assert_eq!(check_approve(&r, "1.1.0"), Ok(()));
        assert_eq!(
            patch(APPROVE_ANNOTATION, "1.1.0"),
            json!({"metadata": {"annotations": {"apprelease.io/approve": "1.1.0"}}})
        );
    }
}
