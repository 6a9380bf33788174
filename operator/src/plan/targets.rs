//! The images each target should run, computed from the spec and the workloads (Deployments
//! and StatefulSets) as they are.

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
/// order, or the first reason it cannot be told. `carried` is the version the release is
/// known to run (`status.currentVersion`), which tells its containers from sidecars.
pub fn desired_images(
    spec: &AppReleaseSpec,
    observed: &Observed,
    version: &str,
    carried: Option<&str>,
) -> Result<Vec<ContainerImage>, TargetError> {
    let mut images = Vec::new();
    for (i, target) in spec.targets.iter().enumerate() {
        let Some(deployment) = observed.deployments.get(target.name()) else {
            return Err(TargetError {
                reason: "TargetNotFound",
                message: format!(
                    "{} {:?} (spec.targets[{i}]) does not exist in this namespace",
                    target.kind(),
                    target.name()
                ),
            });
        };
        images.extend(target_images(i, target, deployment, version, carried)?);
    }
    Ok(images)
}

/// The desired images of one target.
pub fn target_images(
    index: usize,
    target: &Target,
    deployment: &DeploymentState,
    version: &str,
    carried: Option<&str>,
) -> Result<Vec<ContainerImage>, TargetError> {
    let invalid = |message: String| TargetError {
        reason: "InvalidSpec",
        message,
    };
    let selected = selected_containers(target, deployment, version, carried);
    if selected.is_empty() {
        return Err(invalid(format!(
            "{} {:?} has no containers",
            target.kind(),
            target.name()
        )));
    }
    selected
        .into_iter()
        .map(|container| {
            let Some(current) = deployment.image(container) else {
                let present: Vec<&str> = deployment.containers.iter().map(|(n, _)| n.as_str()).collect();
                return Err(invalid(format!(
                    "spec.targets[{index}].containers: {} {:?} has no container {container:?} (it has {})",
                    target.kind(),
                    target.name(),
                    present.join(", ")
                )));
            };
            let repository = target.image.as_deref().unwrap_or_else(|| image::repository(current));
            if repository.is_empty() {
                return Err(invalid(format!(
                    "container {container:?} of {} {:?} has no image; set spec.targets[{index}].image",
                    target.kind(),
                    target.name()
                )));
            }
            Ok(ContainerImage {
                deployment: target.name().to_string(),
                container: container.to_string(),
                image: image::with_tag(repository, version),
            })
        })
        .collect()
}

/// The containers of a target whose image carries the release's version. An explicit list
/// is taken as it is. Without one, a Deployment's sidecars (a metrics exporter, a proxy) must
/// keep their own tags, so only the containers tagged with the version the release runs are
/// chosen: `carried` (the known current version), else `version` (adopting a release that
/// already runs it); failing both — a first visit before an upgrade, or an image changed by
/// hand — the containers tagged like the Deployment's default container (the one the
/// `kubectl.kubernetes.io/default-container` annotation names, else the first, as `kubectl
/// logs` picks it).
pub fn selected_containers<'a>(
    target: &'a Target,
    deployment: &'a DeploymentState,
    version: &str,
    carried: Option<&str>,
) -> Vec<&'a str> {
    if let Some(names) = &target.containers {
        return names.iter().map(String::as_str).collect();
    }
    let tagged = |wanted: Option<&str>| -> Vec<&'a str> {
        deployment
            .containers
            .iter()
            .filter(|(_, current)| image::tag(current) == wanted)
            .map(|(name, _)| name.as_str())
            .collect()
    };
    for candidate in [carried, Some(version)].into_iter().flatten() {
        let found = tagged(Some(candidate));
        if !found.is_empty() {
            return found;
        }
    }
    let default = deployment
        .default_container
        .as_deref()
        .and_then(|name| deployment.containers.iter().find(|(n, _)| n == name))
        .or(deployment.containers.first());
    match default {
        Some((name, current)) if image::tag(current).is_none() => vec![name.as_str()],
        Some((_, current)) => tagged(image::tag(current)),
        None => Vec::new(),
    }
}

/// Containers of the targets without an explicit list that do not carry the release's
/// version and are therefore left alone, so the status can name them.
pub fn untouched_containers(
    spec: &AppReleaseSpec,
    observed: &Observed,
    carried: Option<&str>,
) -> Vec<ContainerImage> {
    let mut untouched = Vec::new();
    for target in spec.targets.iter().filter(|t| t.containers.is_none()) {
        let Some(deployment) = observed.deployments.get(target.name()) else {
            continue;
        };
        let selected = selected_containers(target, deployment, &spec.version, carried);
        for (name, current) in &deployment.containers {
            if !selected.contains(&name.as_str()) {
                untouched.push(ContainerImage {
                    deployment: target.name().to_string(),
                    container: name.clone(),
                    image: current.clone(),
                });
            }
        }
    }
    untouched
}

/// The versions (image tags) the given containers run now, when they are not all the same:
/// `(deployment/container, tag)` pairs for a message. Empty when they agree.
pub fn mixed_versions(wanted: &[ContainerImage], observed: &Observed) -> Vec<(String, String)> {
    let running: Vec<(String, String)> = current_images(wanted, observed)
        .into_iter()
        .map(|c| {
            let tag = image::tag(&c.image).unwrap_or("untagged").to_string();
            (format!("{}/{}", c.deployment, c.container), tag)
        })
        .collect();
    let first = running.first().map(|(_, tag)| tag.clone());
    if running.iter().all(|(_, tag)| Some(tag) == first.as_ref()) {
        Vec::new()
    } else {
        running
    }
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

/// Why an upgrade may not start: a StatefulSet among those that would change whose update
/// strategy never replaces its pods (`OnDelete`, or a partition above zero). Its rollout
/// would never finish, and neither would the rollback after the timeout, so nothing is
/// changed and a human is asked to change the strategy.
pub fn unsupported_strategy(wanted: &[ContainerImage], observed: &Observed) -> Option<String> {
    missing(wanted, observed).into_iter().find_map(|w| {
        let why = observed.deployments.get(&w.deployment)?.unsupported_strategy()?;
        Some(format!(
            "StatefulSet {} cannot be upgraded: {why}. Nothing was changed. Set its spec.updateStrategy to RollingUpdate without a partition (the default), or upgrade it by hand and take it out of spec.targets.",
            w.deployment
        ))
    })
}
