//! The order in which waiting reconciles are admitted, as plain data.
//!
//! Two lanes: [`Lane::Urgent`] for an AppRelease whose latest spec the operator has not
//! answered yet (or that is being deleted), [`Lane::Routine`] for the rest (rollout progress,
//! deadlines, retries). Urgent goes first, but after [`URGENT_STREAK`] urgent admissions in a
//! row a routine one is admitted if any waits, so that a stream of spec changes cannot stall
//! the upgrades already running. Within a lane, namespaces take turns (round robin), and each
//! namespace's own queue is first in, first out: one namespace's burst cannot starve another
//! namespace's single change.

use std::collections::{HashMap, VecDeque};

/// Urgent admissions in a row before a waiting routine one goes.
pub const URGENT_STREAK: u32 = 8;

/// How soon a reconcile should run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// A spec change not yet observed, or a deletion: what a user waits to see answered.
    Urgent,
    /// Progress of what is already under way.
    Routine,
}

/// Waiting items, in the order they are to be admitted.
#[derive(Debug)]
pub struct FairOrder<T> {
    urgent: RoundRobin<T>,
    routine: RoundRobin<T>,
    streak: u32,
}

impl<T> Default for FairOrder<T> {
    fn default() -> Self {
        Self {
            urgent: RoundRobin::default(),
            routine: RoundRobin::default(),
            streak: 0,
        }
    }
}

impl<T> FairOrder<T> {
    /// Queues `item` of `namespace` in `lane`.
    pub fn push(&mut self, lane: Lane, namespace: &str, item: T) {
        match lane {
            Lane::Urgent => self.urgent.push(namespace, item),
            Lane::Routine => self.routine.push(namespace, item),
        }
    }

    /// The next item to admit.
    pub fn pop(&mut self) -> Option<T> {
        let routine_due = self.streak >= URGENT_STREAK || self.urgent.is_empty();
        if routine_due && let Some(item) = self.routine.pop() {
            self.streak = 0;
            return Some(item);
        }
        let item = self.urgent.pop()?;
        self.streak += 1;
        Some(item)
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.urgent.len + self.routine.len
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out per namespace; namespaces in turn.
#[derive(Debug)]
struct RoundRobin<T> {
    queues: HashMap<String, VecDeque<T>>,
    /// The namespaces with something queued, the next to serve first.
    turns: VecDeque<String>,
    len: usize,
}

impl<T> Default for RoundRobin<T> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> RoundRobin<T> {
    fn push(&mut self, namespace: &str, item: T) {
        let queue = self.queues.entry(namespace.to_string()).or_default();
        if queue.is_empty() {
            self.turns.push_back(namespace.to_string());
        }
        queue.push_back(item);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<T> {
        let namespace = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&namespace)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&namespace);
        } else {
            self.turns.push_back(namespace);
        }
        self.len -= 1;
        Some(item)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain<T>(order: &mut FairOrder<T>) -> Vec<T> {
        std::iter::from_fn(|| order.pop()).collect()
    }

    #[test]
    fn a_spec_change_goes_before_a_burst_of_progress() {
        let mut order = FairOrder::default();
        for i in 0..100 {
            order.push(Lane::Routine, "apps", format!("progress-{i}"));
        }
        order.push(Lane::Urgent, "apps", "change".to_string());
        assert_eq!(order.pop().as_deref(), Some("change"));
        assert_eq!(order.pop().as_deref(), Some("progress-0"));
    }

    #[test]
    fn a_namespace_with_one_change_is_served_second_behind_a_burst_of_another() {
        let mut order = FairOrder::default();
        for i in 0..1000 {
            order.push(Lane::Urgent, "mass", i);
        }
        order.push(Lane::Urgent, "alice", 9999);
        assert_eq!(drain(&mut order)[..3], [0, 9999, 1]);
    }

    #[test]
    fn routine_work_still_moves_during_a_stream_of_spec_changes() {
        let mut order = FairOrder::default();
        for i in 0..20 {
            order.push(Lane::Urgent, "apps", format!("change-{i}"));
        }
        order.push(Lane::Routine, "apps", "progress".to_string());
        let drained = drain(&mut order);
        let at = drained.iter().position(|s| s == "progress").unwrap();
        assert_eq!(at, URGENT_STREAK as usize);
    }

    #[test]
    fn the_empty_order_gives_nothing() {
        let mut order = FairOrder::<u8>::default();
        assert!(order.is_empty());
        assert_eq!(order.pop(), None);
    }

    proptest! {
        /// Drained with both lanes full: while urgent items wait, a routine one is admitted
        /// at most once in every URGENT_STREAK + 1 admissions.
        #[test]
        fn urgent_work_gets_most_turns(
            urgent in proptest::collection::vec(0..4u8, 1..100),
            routine in proptest::collection::vec(0..4u8, 1..100),
        ) {
            let mut order = FairOrder::default();
            for ns in &urgent {
                order.push(Lane::Urgent, &ns.to_string(), Lane::Urgent);
            }
            for ns in &routine {
                order.push(Lane::Routine, &ns.to_string(), Lane::Routine);
            }
            let drained = drain(&mut order);
            let last_urgent = drained.iter().rposition(|l| *l == Lane::Urgent).unwrap();
            let routine_before = drained[..=last_urgent]
                .iter()
                .filter(|l| **l == Lane::Routine)
                .count();
            prop_assert!(routine_before <= (last_urgent + 1).div_ceil(URGENT_STREAK as usize + 1));
        }

        /// Pushes and pops interleaved at random: every item pushed comes out once, and
        /// each namespace's items of a lane keep their order.
        #[test]
        fn nothing_is_lost_or_reordered_within_a_namespace_and_lane(
            pushes in proptest::collection::vec((any::<bool>(), 0..4u8), 0..200),
            pops_between in proptest::collection::vec(0..3usize, 0..200),
        ) {
            let mut order = FairOrder::default();
            let mut out = Vec::new();
            let mut steps = pops_between.iter().cycle();
            for (i, (urgent, ns)) in pushes.iter().enumerate() {
                let lane = if *urgent { Lane::Urgent } else { Lane::Routine };
                order.push(lane, &ns.to_string(), (i, lane, *ns));
                if !pops_between.is_empty() {
                    for _ in 0..*steps.next().unwrap() {
                        out.extend(order.pop());
                    }
                }
                prop_assert_eq!(order.len(), i + 1 - out.len());
            }
            out.extend(drain(&mut order));
            prop_assert_eq!(out.len(), pushes.len());
            let mut seen: Vec<usize> = out.iter().map(|(i, _, _)| *i).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..pushes.len()).collect::<Vec<_>>());
            for lane in [Lane::Urgent, Lane::Routine] {
                for ns in 0..4u8 {
                    let ids: Vec<usize> = out
                        .iter()
                        .filter(|(_, l, n)| *l == lane && *n == ns)
                        .map(|(i, _, _)| *i)
                        .collect();
                    prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
    }
}
