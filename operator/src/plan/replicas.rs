//! Stopping targets: their replica counts are recorded (write-ahead) before they are scaled
//! to zero, so that they come back with exactly those, whatever happens in between.

use crate::api::DeploymentReplicas;

use super::decision::{Action, Planner};

/// Records the replica counts of `deployments` in the upgrade unless some are recorded
/// already: the first record is the one from before anything was scaled.
pub fn record(plan: &mut Planner, deployments: &[String]) {
    let recorded = plan
        .status
        .upgrade
        .as_ref()
        .is_some_and(|u| !u.previous_replicas.is_empty());
    if recorded {
        return;
    }
    let replicas: Vec<DeploymentReplicas> = deployments
        .iter()
        .filter_map(|name| {
            let d = plan.observed.deployments.get(name)?;
            Some(DeploymentReplicas {
                deployment: name.clone(),
                replicas: d.replicas,
            })
        })
        .collect();
    if let Some(u) = plan.status.upgrade.as_mut() {
        u.previous_replicas = replicas;
    }
}

/// Scales every recorded Deployment to zero; returns those that still run a pod.
pub fn scale_to_zero(plan: &mut Planner) -> Vec<String> {
    let recorded = plan
        .status
        .upgrade
        .as_ref()
        .map(|u| u.previous_replicas.clone())
        .unwrap_or_default();
    let mut running = Vec::new();
    for r in recorded {
        let Some(d) = plan.observed.deployments.get(&r.deployment) else {
            continue;
        };
        let (scaled, gone) = (d.replicas == 0, d.is_scaled_down());
        if !scaled {
            plan.act(Action::Scale {
                kind: d.kind,
                deployment: r.deployment.clone(),
                replicas: 0,
            });
        }
        if !scaled || !gone {
            running.push(r.deployment);
        }
    }
    running
}
