//! A Deployment belongs to one AppRelease. Two releases that both set its image would flip
//! it back and forth forever, so the one created later (ties broken by name) is refused
//! until the other lets go of it.

use chrono::{DateTime, Utc};

use super::observed::Peer;

/// The targets of the release (`name`, created at `created`) that an earlier AppRelease of
/// the same namespace also lists: `(deployment, owner)` pairs, in target order.
pub fn claimed_targets(
    name: &str,
    created: Option<DateTime<Utc>>,
    targets: &[String],
    peers: &[Peer],
) -> Vec<(String, String)> {
    targets
        .iter()
        .filter_map(|deployment| {
            peers
                .iter()
                .filter(|p| p.name != name && p.deployments.contains(deployment))
                .filter(|p| precedes(p, name, created))
                .min_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
                .map(|owner| (deployment.clone(), owner.name.clone()))
        })
        .collect()
}

/// Whether `peer` came first. A release without a creation time (never the case for a
/// stored object) sorts last, so it cannot take a Deployment from one that has one.
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
            deployments: deployments.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn at(second: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, second).unwrap())
    }

    #[test]
    fn the_later_release_is_refused_ties_by_name() {
        let targets = ["backend".to_string(), "frontend".to_string()];
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
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(d, o)| (d.to_string(), o.to_string()))
                .collect();
            assert_eq!(got, want, "{peers:?}");
        }
    }
}
