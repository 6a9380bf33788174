//! Which backups to prune (invariant 6). The decision is made here; the next backup Job
//! deletes the files only after its own backup succeeded, and the inventory drops them only
//! then. Volumes and PVCs are never deleted.

use crate::api::BackupRecord;

/// The ids to prune once a new backup has succeeded: all but the `keep_last - 1` newest of
/// `backups` (the new one makes `keep_last`), never one in `protected`.
pub fn to_prune(backups: &[BackupRecord], keep_last: i32, protected: &[&str]) -> Vec<String> {
    let keep_old = usize::try_from(keep_last.max(1) - 1).unwrap_or(0);
    let mut newest_first: Vec<&BackupRecord> = backups.iter().collect();
    newest_first.sort_by_key(|b| std::cmp::Reverse(b.taken_at));
    newest_first
        .into_iter()
        .skip(keep_old)
        .filter(|b| !protected.contains(&b.id.as_str()))
        .map(|b| b.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn backup(id: usize) -> BackupRecord {
        BackupRecord {
            id: format!("b{id}"),
            version: "1".into(),
            taken_at: Utc.timestamp_opt(id as i64 * 60, 0).unwrap(),
            job: format!("b{id}"),
            location: None,
            size_bytes: None,
            sha256: None,
        }
    }

    #[test]
    fn keeps_the_newest_and_the_protected() {
        let backups: Vec<_> = (1..=6).rev().map(backup).collect();
        assert_eq!(
            to_prune(&backups, 3, &[]),
            ["b4", "b3", "b2", "b1"].map(String::from)
        );
        assert_eq!(
            to_prune(&backups, 3, &["b1", "b4"]),
            ["b3", "b2"].map(String::from)
        );
        assert!(to_prune(&backups, 7, &[]).is_empty());
        assert_eq!(to_prune(&backups, 1, &[]).len(), 6);
    }

    proptest! {
        #[test]
        fn never_prunes_protected_or_the_newest(n in 0usize..20, keep in 1i32..12, protect in proptest::collection::vec(0usize..20, 0..3)) {
            let backups: Vec<_> = (0..n).map(backup).collect();
            let protected: Vec<String> = protect.iter().map(|i| format!("b{i}")).collect();
            let protected_refs: Vec<&str> = protected.iter().map(String::as_str).collect();
            let pruned = to_prune(&backups, keep, &protected_refs);
            for id in &pruned {
                prop_assert!(!protected.contains(id));
            }
            let kept = n - pruned.len();
            prop_assert!(kept >= (keep as usize - 1).min(n));
            // The newest keep-1 are always kept.
            for i in n.saturating_sub(keep as usize - 1)..n {
                let id = format!("b{i}");
                prop_assert!(!pruned.contains(&id));
            }
        }
    }
}
