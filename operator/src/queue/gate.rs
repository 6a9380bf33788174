//! Admits a bounded number of reconciles at a time, in the order of [`FairOrder`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::fair::{FairOrder, Lane};

/// At most `limit` turns are held at once; the others wait in a fair order.
#[derive(Clone, Debug)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: usize,
    waiting: FairOrder<oneshot::Sender<Turn>>,
}

/// The right to run one reconcile; given back when dropped.
#[derive(Debug)]
#[must_use = "the turn ends when it is dropped"]
pub struct Turn {
    gate: Option<Arc<Inner>>,
}

impl Gate {
    /// A gate admitting `limit` at a time (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                state: Mutex::default(),
            }),
        }
    }

    /// Waits for a turn in `lane`, taking turns with the other namespaces.
    pub async fn enter(&self, lane: Lane, namespace: &str) -> Turn {
        let receiver = {
            let mut state = self.inner.lock();
            if state.held < self.inner.limit {
                state.held += 1;
                return Turn {
                    gate: Some(self.inner.clone()),
                };
            }
            let (sender, receiver) = oneshot::channel();
            state.waiting.push(lane, namespace, sender);
            receiver
        };
        // The sender is only dropped unsent when the gate is, and then no turn is owed.
        receiver.await.unwrap_or(Turn { gate: None })
    }

    /// How many turns are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner.lock().held
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn {
    /// Hands the turn to the next waiter that is still there, or gives it back. A waiter
    /// that gave up (its reconcile was aborted) is skipped; one that goes between being
    /// handed the turn and taking it drops the turn, which passes it on from there.
    fn drop(&mut self) {
        let Some(inner) = self.gate.take() else {
            return;
        };
        loop {
            let next = {
                let mut state = inner.lock();
                match state.waiting.pop() {
                    Some(next) => next,
                    None => {
                        state.held -= 1;
                        return;
                    }
                }
            };
            // Sent outside the lock: a turn that comes back unsent is disarmed, so that its
            // own drop does not hand it on a second time.
            match next.send(Turn {
                gate: Some(inner.clone()),
            }) {
                Ok(()) => return,
                Err(mut unsent) => unsent.gate = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn no_more_than_the_limit_run_and_a_spec_change_is_admitted_first() {
        let gate = Gate::new(2);
        let first = gate.enter(Lane::Routine, "apps").await;
        let second = gate.enter(Lane::Routine, "apps").await;
        assert_eq!(gate.held(), 2);
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (lane, name) in [
            (Lane::Routine, "progress-1"),
            (Lane::Routine, "progress-2"),
            (Lane::Urgent, "change"),
        ] {
            let (gate, order_tx) = (gate.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let turn = gate.enter(lane, "apps").await;
                order_tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(turn);
            }));
            // Each is queued before the next one comes.
            tokio::task::yield_now().await;
        }
        assert!(
            order.try_recv().is_err(),
            "nobody is admitted while both turns are held"
        );
        drop(first);
        drop(second);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let admitted: Vec<_> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(admitted, ["change", "progress-1", "progress-2"]);
        assert_eq!(gate.held(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_a_turn() {
        let gate = Gate::new(1);
        let held = gate.enter(Lane::Routine, "apps").await;
        let gone = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _turn = gate.enter(Lane::Urgent, "apps").await;
            }
        });
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        assert_eq!(gate.held(), 0);
        let _again =
            tokio::time::timeout(Duration::from_secs(1), gate.enter(Lane::Routine, "apps"))
                .await
                .expect("the turn came back");
        assert_eq!(gate.held(), 1);
    }
}
