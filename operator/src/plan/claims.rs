//! A workload belongs to one AppRelease. Two releases that both set its image would flip
//! it back and forth forever, so the one created later (ties broken by name) is refused
//! until the other lets go of it. A workload is its kind and name: a Deployment and a
//! StatefulSet of the same name are different objects, and no claim on one holds the other.

use chrono::{DateTime, Utc};

use crate::api::TargetKind;

use super::observed::Peer;

/// The targets of the release (`name`, created at `created`) that an earlier AppRelease of
/// the same namespace also lists: `((kind, name), owner)` pairs, in target order.
pub fn claimed_targets(
    name: &str,
    created: Option<DateTime<Utc>>,
    targets: &[(TargetKind, String)],
    peers: &[Peer],
) -> Vec<((TargetKind, String), String)> {
    targets
        .iter()
        .filter_map(|workload| {
            peers
                .iter()
                .filter(|p| p.name != name && p.targets.contains(workload))
                .filter(|p| precedes(p, name, created))
                .min_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
                .map(|owner| (workload.clone(), owner.name.clone()))
        })
        .collect()
}

/// Whether `peer` came first. A release without a creation time (never the case for a
/// stored object) sorts last, so it cannot take a workload from one that has one.
fn precedes(peer: &Peer, name: &str, created: Option<DateTime<Utc>>) -> bool {
    let key = |t: Option<DateTime<Utc>>| (t.is_none(), t);
    (key(peer.created), peer.name.as_str()) < (key(created), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn peer(name: &str, second: Option<u32>, deployments: &[&str]) -> Peer {
        Peer {
            name: name.into(),
            created: second.map(|s| Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, s).unwrap()),
            targets: deployments
                .iter()
                .map(|d| (TargetKind::Deployment, d.to_string()))
                .collect(),
        }
    }

    fn deployments(names: &[&str]) -> Vec<(TargetKind, String)> {
        names
            .iter()
            .map(|d| (TargetKind::Deployment, d.to_string()))
            .collect()
    }

    fn at(second: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, second).unwrap())
    }

    #[test]
    fn the_later_release_is_refused_ties_by_name() {
        let targets = deployments(&["backend", "frontend"]);
        for (peers, created, want) in [
            // An older release owns backend.
            (
                vec![peer("old", Some(1), &["backend"])],
                at(5),
                vec![("backend", "old")],
            ),
            // A newer one does not take it from us.
            (vec![peer("new", Some(9), &["backend"])], at(5), vec![]),
            // Same second: the name decides ("a" < "me").
            (
                vec![peer("a", Some(5), &["frontend"])],
                at(5),
                vec![("frontend", "a")],
            ),
            (vec![peer("z", Some(5), &["frontend"])], at(5), vec![]),
            // Other Deployments do not matter; the earliest of several owners is named.
            (
                vec![
                    peer("other", Some(0), &["worker"]),
                    peer("second", Some(3), &["backend"]),
                    peer("first", Some(2), &["backend"]),
                ],
                at(5),
                vec![("backend", "first")],
            ),
            // A peer without a creation time never wins.
            (vec![peer("odd", None, &["backend"])], at(5), vec![]),
            // Our own entry among the peers is ignored.
            (vec![peer("me", Some(0), &["backend"])], at(5), vec![]),
        ] {
            let got = claimed_targets("me", created, &targets, &peers);
            let want: Vec<((TargetKind, String), String)> = want
                .into_iter()
                .map(|(d, o)| ((TargetKind::Deployment, d.to_string()), o.to_string()))
                .collect();
            assert_eq!(got, want, "{peers:?}");
        }
    }

    #[test]
    fn a_statefulset_and_a_deployment_of_the_same_name_are_different_workloads() {
        let older = Peer {
            name: "old".into(),
            created: at(1),
            targets: vec![(TargetKind::Deployment, "worker".into())],
        };
        let statefulset = vec![(TargetKind::StatefulSet, "worker".to_string())];
        assert_eq!(
            claimed_targets("me", at(5), &statefulset, std::slice::from_ref(&older)),
            vec![]
        );
        let older = Peer {
            targets: statefulset.clone(),
            ..older
        };
        assert_eq!(
            claimed_targets("me", at(5), &statefulset, &[older]),
            vec![((TargetKind::StatefulSet, "worker".into()), "old".into())]
        );
    }
}
