//! Why each backup of the inventory is still kept: what `kubectl apprelease backups` shows in
//! its PROTECTED BY column. Pruning happens when the next backup is taken (`start::plan_prune`
//! hands `retention::to_prune` the backups it must not touch), so this answers "would the next
//! backup's retention keep it, and for what reason" — the property test below holds it to
//! exactly what `to_prune` decides.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::AppReleaseStatus;

/// The reasons one backup is kept. None of them set: the next backup prunes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// The upgrade (or on-demand request) in flight depends on it (`status.upgrade.backup`).
    pub in_flight: bool,
    /// The last upgrade that took (or restored) a backup names it: the first history entry
    /// with a backup, what a human would restore after that upgrade.
    pub last_upgrade: bool,
    /// A pending AppReleaseRestore names it.
    pub pending_restore: bool,
    /// It is among the newest `keepLast`, counting the next backup, and not older than
    /// `maxAge`.
    pub keep_last: Option<KeepLast>,
}

/// Kept by `keepLast`, possibly until `maxAge` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepLast {
    /// When it becomes older than `maxAge` and is pruned at the next backup after that;
    /// None without `maxAge`.
    pub expires: Option<DateTime<Utc>>,
}

impl Protection {
    /// Whether anything keeps it.
    pub fn is_protected(&self) -> bool {
        self.in_flight || self.last_upgrade || self.pending_restore || self.keep_last.is_some()
    }
}

/// The protection of each backup of `status.backups`, in that order, at `now`, under
/// `keepLast` and `maxAge`, with `pending_restores` the backup ids that pending
/// AppReleaseRestores name.
pub fn protections(
    status: &AppReleaseStatus,
    keep_last: i32,
    max_age: Option<Duration>,
    pending_restores: &[&str],
    now: DateTime<Utc>,
) -> Vec<Protection> {
    let in_flight = status.upgrade.as_ref().and_then(|u| u.backup.as_deref());
    let last_upgrade = status.history.iter().find_map(|h| h.backup.as_deref());
    // The next backup makes `keepLast` with the ones kept, so it keeps `keepLast - 1` of them.
    let kept_by_count = usize::try_from(keep_last.max(1) - 1).unwrap_or(0);
    // Ranks as retention counts them: newest first, ties in inventory order (a stable sort).
    let mut newest_first: Vec<usize> = (0..status.backups.len()).collect();
    newest_first.sort_by_key(|&i| std::cmp::Reverse(status.backups[i].taken_at));
    let mut rank = vec![0; status.backups.len()];
    for (r, &i) in newest_first.iter().enumerate() {
        rank[i] = r;
    }
    status
        .backups
        .iter()
        .zip(rank)
        .map(|(backup, rank)| {
            // An age too large for a timestamp never expires, as retention sees it too.
            let expires = max_age.map(|age| {
                TimeDelta::from_std(age)
                    .ok()
                    .and_then(|age| backup.taken_at.checked_add_signed(age))
            });
            let expired = matches!(expires, Some(Some(at)) if now > at);
            Protection {
                in_flight: in_flight == Some(backup.id.as_str()),
                last_upgrade: last_upgrade == Some(backup.id.as_str()),
                pending_restore: pending_restores.contains(&backup.id.as_str()),
                keep_last: (rank < kept_by_count && !expired).then_some(KeepLast {
                    expires: expires.flatten(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackupRecord, HistoryEntry, Step, Upgrade, UpgradeResult};
    use crate::plan::retention;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(minute * 60, 0).unwrap()
    }

    fn backup(id: &str, minute: i64) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            version: "1".into(),
            taken_at: at(minute),
            job: id.into(),
            location: None,
            size_bytes: None,
            sha256: None,
            components: Vec::new(),
            images: Vec::new(),
        }
    }

    fn upgrade(backup: Option<&str>) -> Upgrade {
        Upgrade {
            from: "1".into(),
            to: "2".into(),
            attempt: 9,
            step: Step::RollingOut,
            started_at: at(0),
            step_started_at: at(0),
            targets_done: 0,
            backup: backup.map(String::from),
            previous_images: Vec::new(),
            previous_replicas: Vec::new(),
            jobs_seen: Vec::new(),
            prune: Vec::new(),
            migration_started: false,
            restored_components: Vec::new(),
            failure: None,
            request: None,
        }
    }

    fn entry(backup: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            from: "1".into(),
            to: "2".into(),
            attempt: 1,
            started_at: at(0),
            finished_at: at(0),
            result: UpgradeResult::Succeeded,
            reason: "Succeeded".into(),
            message: String::new(),
            backup: backup.map(String::from),
            request: None,
        }
    }

    /// b5 (newest) … b1, taken at minutes 5 … 1.
    fn five() -> AppReleaseStatus {
        AppReleaseStatus {
            backups: (1..=5).rev().map(|i| backup(&format!("b{i}"), i)).collect(),
            ..Default::default()
        }
    }

    /// The protections of `status`, written as one short word each, newest first:
    /// F in flight, L last upgrade, R pending restore, K keepLast, - nothing.
    fn words(
        status: &AppReleaseStatus,
        keep_last: i32,
        max_age: Option<u64>,
        restores: &[&str],
        now: i64,
    ) -> Vec<String> {
        protections(
            status,
            keep_last,
            max_age.map(Duration::from_secs),
            restores,
            at(now),
        )
        .iter()
        .map(|p| {
            let mut w = String::new();
            for (on, letter) in [
                (p.in_flight, 'F'),
                (p.last_upgrade, 'L'),
                (p.pending_restore, 'R'),
                (p.keep_last.is_some(), 'K'),
            ] {
                if on {
                    w.push(letter);
                }
            }
            if w.is_empty() { "-".into() } else { w }
        })
        .collect()
    }

    #[test]
    fn each_reason_as_the_next_backup_would_see_it() {
        let plain = five();
        let with_history = AppReleaseStatus {
            history: vec![entry(None), entry(Some("b2")), entry(Some("b4"))],
            ..five()
        };
        let in_flight = AppReleaseStatus {
            upgrade: Some(upgrade(Some("b1"))),
            ..with_history.clone()
        };
        type Row<'a> = (
            &'a str,
            &'a AppReleaseStatus,
            i32,
            Option<u64>,
            &'a [&'a str],
            [&'a str; 5],
        );
        let rows: [Row; 8] = [
            // keepLast 3 with the next backup: the two newest.
            ("keepLast", &plain, 3, None, &[], ["K", "K", "-", "-", "-"]),
            ("keepLast 1 keeps none", &plain, 1, None, &[], ["-"; 5]),
            ("keepLast 0 is 1", &plain, 0, None, &[], ["-"; 5]),
            ("all within", &plain, 9, None, &[], ["K"; 5]),
            // The first history entry with a backup; older entries pin nothing.
            (
                "last upgrade",
                &with_history,
                2,
                None,
                &[],
                ["K", "-", "-", "L", "-"],
            ),
            (
                "in flight and restores",
                &in_flight,
                2,
                None,
                &["b3", "b1", "gone"],
                ["K", "-", "R", "L", "FR"],
            ),
            // Now is minute 6: b5 is 60 s old, b4 120 s (not older than 120 s: kept).
            (
                "maxAge",
                &plain,
                9,
                Some(120),
                &[],
                ["K", "K", "-", "-", "-"],
            ),
            (
                "maxAge spares no pin",
                &in_flight,
                9,
                Some(1),
                &["b3"],
                ["-", "-", "R", "L", "F"],
            ),
        ];
        for (name, status, keep_last, max_age, restores, want) in rows {
            assert_eq!(
                words(status, keep_last, max_age, restores, 6),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn keep_last_says_when_max_age_takes_it() {
        let p = protections(&five(), 9, Some(Duration::from_secs(600)), &[], at(6));
        assert_eq!(
            p[0].keep_last,
            Some(KeepLast {
                expires: Some(at(15))
            })
        );
        let p = protections(&five(), 9, None, &[], at(6));
        assert_eq!(p[0].keep_last, Some(KeepLast { expires: None }));
        // An age beyond any timestamp: kept, with no date to give.
        let p = protections(&five(), 9, Some(Duration::from_secs(u64::MAX)), &[], at(6));
        assert_eq!(p[0].keep_last, Some(KeepLast { expires: None }));
    }

    #[test]
    fn ranks_by_time_not_by_inventory_order() {
        let status = AppReleaseStatus {
            backups: vec![backup("old", 1), backup("new", 9), backup("mid", 5)],
            ..Default::default()
        };
        assert_eq!(words(&status, 3, None, &[], 10), ["-", "K", "K"]);
    }

    fn status_strategy() -> impl Strategy<Value = (AppReleaseStatus, Vec<String>)> {
        // Up to 12 backups at arbitrary minutes (ties included), ids unique.
        (
            proptest::collection::vec(0i64..40, 0..12),
            proptest::option::of(0usize..14),
            proptest::collection::vec(proptest::option::of(0usize..14), 0..4),
            proptest::collection::vec(0usize..14, 0..4),
        )
            .prop_map(|(minutes, in_flight, history, restores)| {
                let id = |i: usize| format!("b{i}");
                let status = AppReleaseStatus {
                    backups: minutes
                        .iter()
                        .enumerate()
                        .map(|(i, m)| backup(&id(i), *m))
                        .collect(),
                    upgrade: Some(upgrade(in_flight.map(id).as_deref())),
                    history: history
                        .into_iter()
                        .map(|b| entry(b.map(id).as_deref()))
                        .collect(),
                    ..Default::default()
                };
                (status, restores.into_iter().map(id).collect())
            })
    }

    proptest! {
        /// What `to_prune` prunes, given the pins `plan_prune` gives it plus the pending
        /// restores, is exactly what has no protection; and without any pins it prunes
        /// exactly what `keepLast`/`maxAge` do not keep.
        #[test]
        fn agrees_with_retention(
            (status, restores) in status_strategy(),
            keep_last in -1i32..14,
            max_age in proptest::option::of(0u64..3000),
            now in 0i64..50,
        ) {
            let restores: Vec<&str> = restores.iter().map(String::as_str).collect();
            let max_age = max_age.map(Duration::from_secs);
            let policy = retention::Policy { keep_last, max_age, now: at(now) };
            let got = protections(&status, keep_last, max_age, &restores, at(now));

            let mut pins: Vec<&str> = restores.clone();
            pins.extend(status.upgrade.as_ref().and_then(|u| u.backup.as_deref()));
            pins.extend(status.history.iter().find_map(|h| h.backup.as_deref()));
            let pruned = retention::to_prune(&status.backups, policy, &pins);
            let unpinned = retention::to_prune(&status.backups, policy, &[]);
            for (b, p) in status.backups.iter().zip(&got) {
                prop_assert_eq!(pruned.contains(&b.id), !p.is_protected(), "{} {:?}", b.id, p);
                prop_assert_eq!(unpinned.contains(&b.id), p.keep_last.is_none(), "{} {:?}", b.id, p);
            }
        }
    }
}
