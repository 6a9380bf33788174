//! Which backups to prune (invariant 6). The decision is made here; the next backup Job
//! deletes the files only after its own backup succeeded, and the inventory drops them only
//! then. Volumes and PVCs are never deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::BackupRecord;

/// The retention settings of `spec.backup`, at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `keepLast`: how many successful backups to keep, the new one included.
    pub keep_last: i32,
    /// `maxAge`: backups older than this (at `now`) go as well.
    pub max_age: Option<Duration>,
    /// When the decision is made.
    pub now: DateTime<Utc>,
}

/// The ids to prune once a new backup has succeeded: all but the `keep_last - 1` newest of
/// `backups` (the new one makes `keep_last`), and any older than `max_age`; never one in
/// `protected`. Newest first.
pub fn to_prune(backups: &[BackupRecord], policy: Policy, protected: &[&str]) -> Vec<String> {
    let keep_old = usize::try_from(policy.keep_last.max(1) - 1).unwrap_or(0);
    let too_old = |b: &BackupRecord| {
        policy.max_age.is_some_and(|age| {
            (policy.now - b.taken_at)
                .to_std()
                .is_ok_and(|elapsed| elapsed > age)
        })
    };
    let mut newest_first: Vec<&BackupRecord> = backups.iter().collect();
    newest_first.sort_by_key(|b| std::cmp::Reverse(b.taken_at));
    newest_first
        .into_iter()
        .enumerate()
        .filter(|(i, b)| *i >= keep_old || too_old(b))
        .map(|(_, b)| b)
        .filter(|b| !protected.contains(&b.id.as_str()))
        .map(|b| b.id.clone())
        .collect()
}

/// The ids of the files behind the backups `ids` names, which the backup Jobs delete: a
/// single backup's own id, or the Job of each component of a set. Ids the inventory does not
/// know are passed on as they are.
pub fn file_ids(backups: &[BackupRecord], ids: &[String]) -> Vec<String> {
    ids.iter()
        .flat_map(|id| match backups.iter().find(|b| &b.id == id) {
            Some(set) if !set.components.is_empty() => {
                set.components.iter().map(|c| c.job.clone()).collect()
            }
            _ => vec![id.clone()],
        })
        .collect()
}

/// Whether a backup is gone once the files `pruned` are deleted: its own id, or every
/// component of a set, is among them.
pub fn is_pruned(backup: &BackupRecord, pruned: &[String]) -> bool {
    pruned.contains(&backup.id)
        || (!backup.components.is_empty()
            && backup.components.iter().all(|c| pruned.contains(&c.job)))
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
            components: Vec::new(),
            images: Vec::new(),
        }
    }

    fn keep(n: i32) -> Policy {
        Policy {
            keep_last: n,
            max_age: None,
            now: Utc.timestamp_opt(100_000, 0).unwrap(),
        }
    }

    #[test]
    fn keeps_the_newest_and_the_protected() {
        let backups: Vec<_> = (1..=6).rev().map(backup).collect();
        assert_eq!(
            to_prune(&backups, keep(3), &[]),
            ["b4", "b3", "b2", "b1"].map(String::from)
        );
        assert_eq!(
            to_prune(&backups, keep(3), &["b1", "b4"]),
            ["b3", "b2"].map(String::from)
        );
        assert!(to_prune(&backups, keep(7), &[]).is_empty());
        assert_eq!(to_prune(&backups, keep(1), &[]).len(), 6);
    }

    #[test]
    fn max_age_prunes_old_backups_even_within_keep_last() {
        // b1..b6 taken at minutes 1..6; now is minute 6 + 30s.
        let backups: Vec<_> = (1..=6).rev().map(backup).collect();
        let policy = Policy {
            keep_last: 10,
            max_age: Some(Duration::from_secs(150)),
            now: Utc.timestamp_opt(6 * 60 + 30, 0).unwrap(),
        };
        // b4 is 150s old: not older than maxAge, kept.
        assert_eq!(
            to_prune(&backups, policy, &[]),
            ["b3", "b2", "b1"].map(String::from)
        );
        assert_eq!(
            to_prune(&backups, policy, &["b2"]),
            ["b3", "b1"].map(String::from)
        );
    }

    proptest! {
        #[test]
        fn never_prunes_protected_or_the_newest(n in 0usize..20, keep_last in 1i32..12, protect in proptest::collection::vec(0usize..20, 0..3), age in proptest::option::of(1u64..2000)) {
            let backups: Vec<_> = (0..n).map(backup).collect();
            let protected: Vec<String> = protect.iter().map(|i| format!("b{i}")).collect();
            let protected_refs: Vec<&str> = protected.iter().map(String::as_str).collect();
            let now = Utc.timestamp_opt(n as i64 * 60, 0).unwrap();
            let policy = Policy { keep_last, max_age: age.map(Duration::from_secs), now };
            let pruned = to_prune(&backups, policy, &protected_refs);
            for id in &pruned {
                prop_assert!(!protected.contains(id));
            }
            for (i, b) in backups.iter().enumerate() {
                let rank = n - 1 - i; // 0 = newest
                let young = age.is_none_or(|a| (now - b.taken_at).num_seconds() as u64 <= a);
                let should_keep = (rank < keep_last as usize - 1 && young) || protected.contains(&b.id);
                prop_assert_eq!(!pruned.contains(&b.id), should_keep, "{} rank {}", b.id, rank);
            }
        }
    }
}
