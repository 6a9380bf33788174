//! Names of the objects the operator creates, derived from the upgrade intent recorded in
//! status (invariant 3): a restarted operator computes the same name and adopts the object
//! instead of creating a second one.

use std::fmt;

/// The kinds of Job an upgrade can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Backup before any change.
    Backup,
    /// Schema migration with the new image.
    Migration,
    /// Smoke test after the rollout.
    Verify,
    /// Down-migration with the new image, during a rollback.
    Downgrade,
    /// Restore of the upgrade's backup, during a rollback (or of the chosen backup, on
    /// request).
    Restore,
    /// A preset's restore script in check mode, before an on-demand restore: the backup is
    /// there and its checksum matches; nothing is touched.
    Check,
}

impl JobKind {
    /// Short word used in names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Migration => "migrate",
            JobKind::Verify => "verify",
            JobKind::Downgrade => "downgrade",
            JobKind::Restore => "restore",
            JobKind::Check => "check",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest Job name: the Job controller copies it into the `job-name` label of its pods, and
/// label values are at most 63 characters.
const MAX_JOB_NAME: usize = 63;

/// `{release}-{kind}-{attempt}`, with the release part shortened and made unique by a hash
/// when the whole would be too long.
pub fn job_name(release: &str, kind: JobKind, attempt: i64) -> String {
    named(release, format!("-{kind}-{attempt}"))
}

/// The Job of one component of a backup set: `{release}-{kind}-{attempt}-{component}`
/// (shortened like [`job_name`]); the single backup's Job (`component` None) is
/// `job_name`'s. Component names are DNS labels of at most 20 characters, so the suffix
/// always leaves room for the hashed release part.
pub fn component_job_name(
    release: &str,
    kind: JobKind,
    attempt: i64,
    component: Option<&str>,
) -> String {
    match component {
        None => job_name(release, kind, attempt),
        Some(c) => named(release, format!("-{kind}-{attempt}-{c}")),
    }
}

fn named(release: &str, suffix: String) -> String {
    let full = format!("{release}{suffix}");
    if full.len() <= MAX_JOB_NAME {
        return full;
    }
    let hash = format!("{:08x}", fnv1a(release.as_bytes()) as u32);
    let room = MAX_JOB_NAME - suffix.len() - hash.len() - 1;
    let prefix = release[..room].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}{suffix}")
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, whose output may change between Rust
/// releases, which would rename Jobs under a running upgrade).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_are_readable() {
        assert_eq!(job_name("meet", JobKind::Migration, 3), "meet-migrate-3");
        assert_eq!(job_name("meet", JobKind::Backup, 12), "meet-backup-12");
        assert_eq!(
            component_job_name("meet", JobKind::Backup, 12, Some("db")),
            "meet-backup-12-db"
        );
    }

    proptest! {
        #[test]
        fn component_names_fit_labels_and_stay_distinct(a in "[a-z][a-z0-9-]{0,252}", c in "[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?", d in "[a-z0-9]{1,20}", n in 1i64..10_000_000) {
            let name = component_job_name(&a, JobKind::Restore, n, Some(&c));
            prop_assert!(name.len() <= MAX_JOB_NAME, "{}", name);
            let suffix = format!("-restore-{}-{}", n, c);
            prop_assert!(name.ends_with(&suffix));
            prop_assert!(!name.starts_with('-'));
            if c != d {
                prop_assert_ne!(&name, &component_job_name(&a, JobKind::Restore, n, Some(&d)));
            }
            prop_assert_eq!(component_job_name(&a, JobKind::Restore, n, None), job_name(&a, JobKind::Restore, n));
        }

        #[test]
        fn names_fit_labels_and_stay_distinct(a in "[a-z][a-z0-9-]{0,252}", b in "[a-z][a-z0-9-]{0,252}", n in 1i64..100_000) {
            let name = job_name(&a, JobKind::Downgrade, n);
            prop_assert!(name.len() <= MAX_JOB_NAME);
            let suffix = format!("-downgrade-{n}");
            prop_assert!(name.ends_with(&suffix));
            prop_assert!(!name.starts_with('-'));
            prop_assert_eq!(&name, &job_name(&a, JobKind::Downgrade, n));
            if a != b {
                prop_assert_ne!(name, job_name(&b, JobKind::Downgrade, n));
            }
        }
    }
}
