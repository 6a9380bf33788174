//! The images each target should run, computed from the spec and the Deployments as they are.

use crate::api::{AppReleaseSpec, ContainerImage, Target, image};

use super::observed::{DeploymentState, Observed};

/// Why the targets cannot be resolved against the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError {
    /// TargetNotFound or InvalidSpec.
    pub reason: &'static str,
    /// For a human.
    pub message: String,
}

/// The image every selected container of every target should run for `version`, in spec
/// order, or the first reason it cannot be told.
pub fn desired_images(
    spec: &AppReleaseSpec,
    observed: &Observed,
    version: &str,
) -> Result<Vec<ContainerImage>, TargetError> {
    let mut images = Vec::new();
    for (i, target) in spec.targets.iter().enumerate() {
        let Some(deployment) = observed.deployments.get(&target.deployment) else {
            return Err(TargetError {
                reason: "TargetNotFound",
                message: format!(
                    "Deployment {:?} (spec.targets[{i}]) does not exist in this namespace",
                    target.deployment
                ),
            });
        };
        images.extend(target_images(i, target, deployment, version)?);
    }
    Ok(images)
}

/// The desired images of one target.
pub fn target_images(
    index: usize,
    target: &Target,
    deployment: &DeploymentState,
    version: &str,
) -> Result<Vec<ContainerImage>, TargetError> {
    let invalid = |message: String| TargetError {
        reason: "InvalidSpec",
        message,
    };
    let selected: Vec<&str> = match &target.containers {
        Some(names) => names.iter().map(String::as_str).collect(),
        None => deployment
            .containers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect(),
    };
    if selected.is_empty() {
        return Err(invalid(format!(
            "Deployment {:?} has no containers",
            target.deployment
        )));
    }
    selected
        .into_iter()
        .map(|container| {
            let Some(current) = deployment.image(container) else {
                let present: Vec<&str> = deployment.containers.iter().map(|(n, _)| n.as_str()).collect();
                return Err(invalid(format!(
                    "spec.targets[{index}].containers: Deployment {:?} has no container {container:?} (it has {})",
                    target.deployment,
                    present.join(", ")
                )));
            };
            let repository = target.image.as_deref().unwrap_or_else(|| image::repository(current));
            if repository.is_empty() {
                return Err(invalid(format!(
                    "container {container:?} of Deployment {:?} has no image; set spec.targets[{index}].image",
                    target.deployment
                )));
            }
            Ok(ContainerImage {
                deployment: target.deployment.clone(),
                container: container.to_string(),
                image: image::with_tag(repository, version),
            })
        })
        .collect()
}

/// The images among `wanted` that the Deployment does not run yet.
pub fn missing<'a>(wanted: &'a [ContainerImage], observed: &Observed) -> Vec<&'a ContainerImage> {
    wanted
        .iter()
        .filter(|w| {
            observed
                .deployments
                .get(&w.deployment)
                .and_then(|d| d.image(&w.container))
                != Some(w.image.as_str())
        })
        .collect()
}

/// The images the given containers run now.
pub fn current_images(wanted: &[ContainerImage], observed: &Observed) -> Vec<ContainerImage> {
    wanted
        .iter()
        .filter_map(|w| {
            let image = observed
                .deployments
                .get(&w.deployment)?
                .image(&w.container)?;
            Some(ContainerImage {
                image: image.to_string(),
                ..w.clone()
            })
        })
        .collect()
}
