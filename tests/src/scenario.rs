//! One scenario's world: a cluster with the example application and a running operator.

use std::time::{Duration, Instant};

use apprelease_operator::api::conditions::{ConditionStatus, RECONCILING};
use apprelease_operator::api::{AppRelease, AppReleaseStatus};

use crate::fixtures::{self, Jobs, RELEASE, V1};
use crate::{Cluster, Operator, inspect, testbed};

/// How long any single wait may take before the scenario fails: a liveness bound.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A cluster, the app, and the operator. On the real control plane, a scenario that ends
/// with any request of the operator refused (403) in its namespace (or, for its Lease, in the
/// operator's) fails when dropped: the shipped RBAC must allow everything the operator does.
pub struct Scenario {
    /// The cluster.
    pub cluster: Cluster,
    /// The operator process.
    pub operator: Operator,
}

impl Scenario {
    /// The app on `V1` and a running operator.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let cluster = Cluster::start(name).await?;
        fixtures::deploy_app(&cluster).await?;
        let operator = Operator::start(&cluster)?;
        Ok(Self { cluster, operator })
    }

    /// Applies the default release at `V1` with these Jobs and waits until it is Ready.
    pub async fn adopt(&self, jobs: &Jobs) -> anyhow::Result<AppRelease> {
        let release = fixtures::release(&self.cluster, RELEASE, V1, jobs);
        fixtures::apply(&self.cluster, &release).await?;
        self.wait_ready(RELEASE, V1).await?;
        Ok(release)
    }

    /// Waits until `name` is Ready at `version` for its current generation.
    pub async fn wait_ready(&self, name: &str, version: &str) -> anyhow::Result<AppReleaseStatus> {
        self.wait_for(name, &format!("{name} is Ready at {version}"), |s| {
            s.current_version.as_deref() == Some(version)
                && inspect::ready(s).is_some_and(|(c, _)| c == ConditionStatus::True)
        })
        .await
    }

    /// Waits until no upgrade is in flight and Ready has this reason (for the current
    /// generation).
    pub async fn wait_settled(&self, name: &str, reason: &str) -> anyhow::Result<AppReleaseStatus> {
        self.wait_for(name, &format!("{name} settles with reason {reason}"), |s| {
            s.upgrade.is_none()
                && !inspect::is_true(s, RECONCILING)
                && inspect::ready(s).is_some_and(|(_, r)| r == reason)
        })
        .await
    }

    /// The Events about `name`, once every one of `reasons` is among them (the operator
    /// publishes Events just after the status they describe, so they may lag it a little).
    pub async fn events_with(
        &self,
        name: &str,
        reasons: &[&str],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let events = inspect::events(&self.cluster, name).await?;
            if reasons
                .iter()
                .all(|r| events.iter().any(|(reason, _)| reason == r))
            {
                return Ok(events);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("no Events {reasons:?} for {name} in {events:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the upgrade of `name` is at `step` (e.g. "Migrating").
    pub async fn wait_for_step(&self, name: &str, step: &str) -> anyhow::Result<AppReleaseStatus> {
        self.wait_for(name, &format!("{name} is {step}"), |s| {
            s.upgrade.as_ref().is_some_and(|u| u.step.as_str() == step)
        })
        .await
    }

    /// Waits until the status of `name`, written for its current generation, satisfies `check`.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AppReleaseStatus) -> bool,
    ) -> anyhow::Result<AppReleaseStatus> {
        let deadline = Instant::now() + PATIENCE;
        let mut last = AppReleaseStatus::default();
        while Instant::now() < deadline {
            if let Ok(release) = inspect::release(&self.cluster, name).await {
                last = release.status.clone().unwrap_or_default();
                if last.observed_generation == release.metadata.generation && check(&last) {
                    return Ok(last);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "timed out waiting until {what}\nlast status: {last:#?}\noperator log:\n{}",
            self.operator.log_tail(40)
        )
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let Some(testbed) = self.cluster.testbed() else {
            return;
        };
        if std::thread::panicking() {
            testbed::keep_files();
            return;
        }
        let user = testbed::OPERATOR_USER;
        let mut forbidden = testbed.forbidden(user, Some(&self.cluster.namespace));
        // Its Lease, in the operator's namespace (shared by the test process's scenarios).
        forbidden.extend(testbed.forbidden(user, Some(testbed::OPERATOR_NAMESPACE)));
        if !forbidden.is_empty() {
            testbed::keep_files();
            panic!(
                "the API server refused {} request(s) of the operator (403) in {} or {}: \
                 {forbidden:?}\nthe shipped RBAC (manifests/rbac.yaml) does not allow what it does",
                forbidden.len(),
                self.cluster.namespace,
                testbed::OPERATOR_NAMESPACE
            );
        }
    }
}
