//! Leader election on a `coordination.k8s.io/v1` Lease: of several replicas only the one that
//! holds the Lease runs the controller, so that one process writes AppRelease statuses and
//! creates Jobs while the others stand by.
//!
//! Written here rather than taken from a crate. kube-runtime 5.0.0 has no leader election.
//! Of the crates on crates.io, `kube-leader-election` 0.44 pins kube 4 and `kube-coordinate`
//! 2.0.0-rc.0 kube 2 (a second kube in the build); `kube-lease-manager` 0.13.1 builds on
//! kube 5, but its watch loop only logs an error from the API server and keeps the last state,
//! so a leader that cannot renew never learns that it lost the Lease while a standby takes it
//! over after expiry (two writers), and it clears an expired Lease with a patch that has no
//! precondition (src/manager.rs `watch`, src/state.rs `release`).
//!
//! The rules are client-go's (tools/leaderelection/leaderelection.go, v0.37.2):
//! - Every write is an update that carries the resourceVersion just read, so of two replicas
//!   that both find the Lease free, one gets 409 Conflict and reads again.
//! - A Lease held by another replica expires `leaseDurationSeconds` after this replica last
//!   *saw it change*, on its own monotonic clock. `renewTime` is never compared with the local
//!   time, so clock skew between nodes does not matter (only clock rates do).
//! - The leader renews every `renew_period` and stops leading once it has not renewed for
//!   `renew_deadline`, which is shorter than the lease duration: it has stopped before any
//!   standby may take over.
//! - Released on shutdown by writing `holderIdentity: ""` and `leaseDurationSeconds: 1`
//!   (client-go's `tryRelease`), still with the precondition: a standby takes a free Lease at
//!   its next look instead of waiting for expiry.
//!
//! The decisions are plain functions ([`next`], [`claim`], [`released`], [`Seen::observe`]);
//! [`Elector`] only reads and writes.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a Lease lasts and how often it is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Written into the Lease: how long standbys wait after its last change.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// The leader stops leading when it has not renewed for this long.
    pub renew_deadline: Duration,
    /// How soon a failed attempt is tried again, and how often a standby looks.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// client-go's defaults for the lease duration, renew deadline and retry period
    /// (15 s, 10 s, 2 s), renewing every 5 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// When a leader whose last successful renewal was sent at `renewed_at` stops leading.
    pub fn stop_leading_at(&self, renewed_at: Instant) -> Instant {
        renewed_at + self.renew_deadline
    }

    /// How long a standby waits before it looks again, the Lease expiring in `expires_in`.
    pub fn standby_wait(&self, expires_in: Duration) -> Duration {
        expires_in.min(self.retry_period)
    }
}

/// What a replica does next, given the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// There is no Lease: create it, held by this replica.
    Create,
    /// This replica holds it: renew.
    Renew,
    /// It is free (released) or expired: take it over.
    Take,
    /// Another replica holds it.
    StandBy {
        /// Who.
        holder: String,
        /// When it expires unless it changes again, by this replica's clock.
        expires_in: Duration,
    },
}

/// The decision: `lease` as just read (None: there is none), this replica's identity `me`,
/// and how long the Lease has been seen unchanged ([`Seen::observe`]).
pub fn next(lease: Option<&Lease>, me: &str, unchanged_for: Duration) -> Next {
    let Some(lease) = lease else {
        return Next::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        None | Some("") => Next::Take,
        Some(holder) if holder == me => Next::Renew,
        Some(holder) => {
            // Missing or negative: expired at once, as client-go reads it.
            let seconds = spec.lease_duration_seconds.unwrap_or(0).max(0);
            let duration = Duration::from_secs(seconds as u64);
            match duration.checked_sub(unchanged_for) {
                Some(left) if !left.is_zero() => Next::StandBy {
                    holder: holder.to_string(),
                    expires_in: left,
                },
                _ => Next::Take,
            }
        }
    }
}

/// The Lease's spec once `me` holds it: renewed (the same holder keeps its acquireTime and
/// transition count), taken over (`acquireTime` now, one more transition) or new (`old`
/// None: zero transitions).
pub fn claim(old: Option<&LeaseSpec>, me: &str, timing: &Timing, now: Timestamp) -> LeaseSpec {
    // A new Lease starts at zero transitions, as client-go's does.
    let transitions = old.map_or(-1, |o| o.lease_transitions.unwrap_or(0));
    let old = old.cloned().unwrap_or_default();
    let renewing = old.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(timing.lease_duration.as_secs() as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: if renewing {
            old.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(if renewing {
            transitions
        } else {
            transitions + 1
        }),
        ..old
    }
}

/// The Lease's spec once given up: no holder, a one-second duration (client-go's release).
pub fn released(old: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..old.clone()
    }
}

/// The Lease as this replica last saw it, and since when, by its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    resource_version: String,
    since: Instant,
}

impl Seen {
    /// Records a read of `resource_version` at `now` and returns how long the Lease has been
    /// seen unchanged: zero on the first look and after every change (its last write may have
    /// been just before this read, whatever its `renewTime` says).
    pub fn observe(seen: &mut Option<Seen>, resource_version: &str, now: Instant) -> Duration {
        match seen {
            Some(s) if s.resource_version == resource_version => now.duration_since(s.since),
            _ => {
                *seen = Some(Seen {
                    resource_version: resource_version.to_string(),
                    since: now,
                });
                Duration::ZERO
            }
        }
    }
}

/// The outcome of one look at the Lease.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// This replica holds it; the write that said so was sent at `sent`.
    Held { sent: Instant },
    /// Another replica holds it.
    HeldBy {
        holder: String,
        expires_in: Duration,
    },
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Lost {
    /// The renewals failed until the renew deadline.
    #[error("the Lease was not renewed within {0:?}")]
    Deadline(Duration),
    /// Another replica holds the Lease.
    #[error("{0} holds the Lease")]
    TakenBy(String),
}

/// One replica's side of the election, on the Lease `name`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    seen: Option<Seen>,
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl Elector {
    /// An elector for the Lease `namespace/name`, as `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            seen: None,
        }
    }

    /// Waits until this replica holds the Lease; `standing_by` is told each new holder seen
    /// meanwhile. Returns when the write that took it was sent (see [`Elector::hold`]).
    pub async fn acquire(&mut self, mut standing_by: impl FnMut(&str)) -> Instant {
        let mut last_holder = None;
        loop {
            let wait = match self.try_claim().await {
                Ok(Claim::Held { sent }) => {
                    info!(
                        lease = self.name,
                        identity = self.identity,
                        "acquired the Lease"
                    );
                    return sent;
                }
                Ok(Claim::HeldBy { holder, expires_in }) => {
                    if last_holder.as_ref() != Some(&holder) {
                        info!(lease = self.name, %holder, "standing by: another replica holds the Lease");
                        standing_by(&holder);
                        last_holder = Some(holder);
                    }
                    self.timing.standby_wait(expires_in)
                }
                // Someone wrote between the read and the write: read again now.
                Err(error) if is_conflict(&error) => Duration::ZERO,
                Err(error) => {
                    warn!(lease = self.name, %error, "reading or taking the Lease");
                    self.timing.retry_period
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews the Lease, acquired by a write sent at `renewed_at`, until it is lost: another
    /// replica holds it, or no renewal succeeded within the renew deadline. Returns at the
    /// deadline at the latest, also while a request hangs.
    pub async fn hold(&mut self, mut renewed_at: Instant) -> Lost {
        loop {
            tokio::time::sleep_until(renewed_at + self.timing.renew_period).await;
            let stop_at = self.timing.stop_leading_at(renewed_at);
            match tokio::time::timeout_at(stop_at, self.renew()).await {
                Ok(Ok(sent)) => renewed_at = sent,
                Ok(Err(holder)) => return Lost::TakenBy(holder),
                Err(_) => return Lost::Deadline(self.timing.renew_deadline),
            }
        }
    }

    /// Tries to renew until it succeeds (when the write was sent) or finds another holder.
    async fn renew(&mut self) -> Result<Instant, String> {
        loop {
            match self.try_claim().await {
                Ok(Claim::Held { sent }) => return Ok(sent),
                Ok(Claim::HeldBy { holder, .. }) => return Err(holder),
                Err(error) if is_conflict(&error) => {}
                Err(error) => {
                    warn!(lease = self.name, %error, "renewing the Lease");
                    tokio::time::sleep(self.timing.retry_period).await;
                }
            }
        }
    }

    /// Gives the Lease up if this replica holds it, so that a standby takes over at once.
    /// Returns whether it did.
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        loop {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            lease.spec = Some(released(&spec, Timestamp::now()));
            // `lease.metadata.resourceVersion` is the one just read: the precondition.
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    info!(lease = self.name, "released the Lease");
                    return Ok(true);
                }
                Err(error) if is_conflict(&error) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads the Lease and makes the write [`next`] calls for.
    async fn try_claim(&mut self) -> Result<Claim, kube::Error> {
        // Before the read: the leader's deadline counts from no later than its write.
        let sent = Instant::now();
        let lease = self.api.get_opt(&self.name).await?;
        let unchanged_for = match &lease {
            Some(l) => Seen::observe(
                &mut self.seen,
                l.resource_version().as_deref().unwrap_or_default(),
                Instant::now(),
            ),
            None => Duration::ZERO,
        };
        let now = Timestamp::now();
        let stored = match (next(lease.as_ref(), &self.identity, unchanged_for), lease) {
            (Next::StandBy { holder, expires_in }, _) => {
                return Ok(Claim::HeldBy { holder, expires_in });
            }
            (Next::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(claim(None, &self.identity, &self.timing, now)),
                };
                self.api.create(&PostParams::default(), &lease).await?
            }
            (Next::Renew | Next::Take, Some(mut lease)) => {
                lease.spec = Some(claim(
                    lease.spec.as_ref(),
                    &self.identity,
                    &self.timing,
                    now,
                ));
                // The resourceVersion just read stays in the body: the precondition.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?
            }
        };
        Seen::observe(
            &mut self.seen,
            stored.resource_version().as_deref().unwrap_or_default(),
            Instant::now(),
        );
        Ok(Claim::Held { sent })
    }
}

/// The namespace of the Lease: `--lease-namespace`, else the namespace of the pod's
/// ServiceAccount (`service_account_namespace`, the file's contents), else
/// `apprelease-system`, where the shipped manifests install the operator.
pub fn lease_namespace(flag: Option<String>, service_account_namespace: Option<String>) -> String {
    flag.or_else(|| {
        service_account_namespace
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty())
    })
    .unwrap_or_else(|| "apprelease-system".to_string())
}

/// Where a pod finds its ServiceAccount's namespace.
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// This replica's name in the Lease: the pod name (`POD_NAME`, from the downward API), else
/// `hostname_pid`. A container restarted in the same pod keeps its name and takes its own
/// Lease back at once; its previous process is gone.
pub fn identity(pod_name: Option<String>, hostname: Option<String>, pid: u32) -> String {
    match pod_name.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => {
            let host = hostname
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string());
            format!("{host}_{pid}")
        }
    }
}

#[cfg(test)]
mod tests;
