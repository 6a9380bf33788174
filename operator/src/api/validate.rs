//! Static checks of a spec, run before anything else. They repeat the CRD's CEL rules (an API
//! server that skipped them, or an object written before a rule existed, must still get a
//! readable answer) and add what a schema cannot say, such as pod template contents.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{SecretKeyRef, duration, image, presets::BackupPreset, schedule, spec::*, version};

/// One problem with a spec, at a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path in the spec, e.g. `spec.targets[1].image`.
    pub path: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in the spec, in field order; empty when the spec is valid.
pub fn validate(spec: &AppReleaseSpec) -> Vec<FieldError> {
    let mut errors = Errors::default();
    if let Some(why) = version::tag_error(&spec.version) {
        errors.add(
            "spec.version",
            format!("{:?} is not a valid image tag: it {why}", spec.version),
        );
    }
    check_targets(&spec.targets, &mut errors);
    if let Some(backup) = &spec.backup {
        match (&backup.template, &backup.preset, backup.components.is_empty()) {
            (Some(template), None, true) => {
                check_template("spec.backup.template", template, &mut errors)
            }
            (None, Some(preset), true) => check_preset("spec.backup.preset", preset, &mut errors),
            (None, None, false) => check_components(&backup.components, &mut errors),
            (None, None, true) => errors.add(
                "spec.backup",
                "a template, a preset (postgres, mysql, redis, mongodb, volume) or components are needed",
            ),
            _ => errors.add(
                "spec.backup",
                "give one of template, preset and components, not several",
            ),
        }
        if let Some(age) = &backup.max_age
            && let Err(message) = duration::parse_age(age)
        {
            errors.add("spec.backup.maxAge", message);
        }
        if backup.keep_last < 1 {
            errors.add(
                "spec.backup.keepLast",
                format!("must be at least 1, not {}", backup.keep_last),
            );
        }
        errors.duration("spec.backup.timeout", &backup.timeout);
    }
    if let Some(migration) = &spec.migration {
        check_template("spec.migration.template", &migration.template, &mut errors);
        errors.duration("spec.migration.timeout", &migration.timeout);
    }
    errors.duration("spec.rollout.timeout", &spec.rollout.timeout);
    if let Some(verify) = &spec.verify {
        check_template("spec.verify.template", &verify.template, &mut errors);
        errors.duration("spec.verify.timeout", &verify.timeout);
    }
    check_rollback(spec, &mut errors);
    check_windows(&spec.maintenance_windows, &mut errors);
    if let Some(notifications) = &spec.notifications {
        check_secret_key(
            "spec.notifications.webhook.urlSecretRef",
            &notifications.webhook.url_secret_ref,
            &mut errors,
        );
    }
    errors.0
}

fn check_windows(windows: &[MaintenanceWindow], errors: &mut Errors) {
    if windows.len() > 16 {
        errors.add(
            "spec.maintenanceWindows",
            format!("at most 16 windows, not {}", windows.len()),
        );
    }
    for (i, window) in windows.iter().enumerate() {
        if let Err(problems) = schedule::parse(window) {
            for (field, message) in problems {
                errors.add(format!("spec.maintenanceWindows[{i}].{field}"), message);
            }
        }
    }
}

fn check_targets(targets: &[Target], errors: &mut Errors) {
    if targets.is_empty() {
        errors.add(
            "spec.targets",
            "at least one target (a Deployment or a StatefulSet) is needed",
        );
    }
    let mut seen = HashMap::new();
    for (i, target) in targets.iter().enumerate() {
        let path = format!("spec.targets[{i}]");
        let (field, name) = match (&target.deployment, &target.stateful_set) {
            (Some(name), None) => ("deployment", name),
            (None, Some(name)) => ("statefulSet", name),
            (Some(_), Some(_)) => {
                errors.add(
                    path,
                    "give either deployment or statefulSet, not both: a target is one workload",
                );
                continue;
            }
            (None, None) => {
                errors.add(
                    path,
                    "name the workload: deployment: <name> or statefulSet: <name>",
                );
                continue;
            }
        };
        let kind = target.kind();
        if !is_object_name(name) {
            errors.add(
                format!("{path}.{field}"),
                format!("{name:?} is not a {kind} name (lower-case letters, digits, '-' and '.')"),
            );
        }
        // Targets are known by name alone (in the status and the observed snapshot), so a
        // Deployment and a StatefulSet of the same name cannot both be targets.
        match seen.insert(name.as_str(), kind) {
            Some(first) if first == kind => errors.add(
                format!("{path}.{field}"),
                format!("{kind} {name:?} is listed twice"),
            ),
            Some(first) => errors.add(
                format!("{path}.{field}"),
                format!(
                    "{kind} {name:?} has the name of {first} {name:?}, also listed: targets are told apart by name, so rename one of the two"
                ),
            ),
            None => {}
        }
        if let Some(containers) = &target.containers {
            if containers.is_empty() {
                errors.add(
                    format!("{path}.containers"),
                    "leave it out to mean every container, or name at least one",
                );
            }
            let mut names = HashSet::new();
            for name in containers {
                if !names.insert(name) {
                    errors.add(
                        format!("{path}.containers"),
                        format!("container {name:?} is listed twice"),
                    );
                }
            }
        }
        if let Some(repo) = &target.image
            && (repo.is_empty() || image::is_pinned(repo))
        {
            errors.add(
                format!("{path}.image"),
                format!(
                    "{repo:?} must be a repository without tag or digest; the tag is spec.version"
                ),
            );
        }
    }
}

fn check_rollback(spec: &AppReleaseSpec, errors: &mut Errors) {
    let rollback = &spec.rollback;
    match rollback.database {
        DatabaseRollback::None => {}
        DatabaseRollback::Downgrade => {
            if rollback.downgrade.is_none() {
                errors.add(
                    "spec.rollback.downgrade",
                    "database: Downgrade needs a downgrade Job template",
                );
            }
        }
        DatabaseRollback::Restore => {
            if spec.backup.is_none() {
                errors.add(
                    "spec.rollback.database",
                    "Restore needs spec.backup: there would be no backup to restore",
                );
            }
            let set = spec
                .backup
                .as_ref()
                .is_some_and(|b| !b.components.is_empty());
            let preset = spec.backup.as_ref().is_some_and(|b| b.preset.is_some());
            if set {
                for (i, c) in spec.backup.iter().flat_map(|b| &b.components).enumerate() {
                    if c.template.is_some() && c.restore.is_none() {
                        errors.add(
                            format!("spec.backup.components[{i}].restore"),
                            format!("database: Restore needs a restore Job template for the template component {}", c.name),
                        );
                    }
                }
            } else if rollback.restore.is_none() && !preset {
                errors.add(
                    "spec.rollback.restore",
                    "database: Restore needs a restore Job template (or a backup preset, which restores by itself)",
                );
            }
        }
    }
    if rollback.restore.is_some()
        && spec
            .backup
            .as_ref()
            .is_some_and(|b| !b.components.is_empty())
    {
        errors.add(
            "spec.rollback.restore",
            "rollback.restore is for a single backup: in a backup set, each template component has its own restore",
        );
    }
    for (path, job) in [
        ("spec.rollback.downgrade", &rollback.downgrade),
        ("spec.rollback.restore", &rollback.restore),
    ] {
        if let Some(job) = job {
            check_template(&format!("{path}.template"), &job.template, errors);
            errors.duration(&format!("{path}.timeout"), &job.timeout);
        }
    }
}

/// A backup set: at most 8 components, unique DNS-label names of at most 20 characters,
/// each a template or a preset, a restore template only beside a template.
fn check_components(components: &[BackupComponent], errors: &mut Errors) {
    if components.len() > 8 {
        errors.add(
            "spec.backup.components",
            format!("at most 8 components, not {}", components.len()),
        );
    }
    let mut seen = HashSet::new();
    for (i, component) in components.iter().enumerate() {
        let path = format!("spec.backup.components[{i}]");
        let name = &component.name;
        if !is_dns_label(name) || name.len() > 20 {
            errors.add(
                format!("{path}.name"),
                format!("{name:?} must be a DNS label (lower-case letters, digits, '-') of at most 20 characters"),
            );
        } else if !seen.insert(name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("component {name} is listed twice"),
            );
        }
        match (&component.template, &component.preset) {
            (Some(template), None) => check_template(&format!("{path}.template"), template, errors),
            (None, Some(preset)) => {
                check_preset(&format!("{path}.preset"), preset, errors);
                if component.restore.is_some() {
                    errors.add(
                        format!("{path}.restore"),
                        "restore is for a template component: a preset restores its own backups",
                    );
                }
            }
            (Some(_), Some(_)) => errors.add(&path, "give either a template or a preset, not both"),
            (None, None) => errors.add(&path, "a template or a preset is needed"),
        }
        if let Some(restore) = &component.restore {
            check_template(
                &format!("{path}.restore.template"),
                &restore.template,
                errors,
            );
            errors.duration(&format!("{path}.restore.timeout"), &restore.timeout);
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn check_preset(at: &str, preset: &BackupPreset, errors: &mut Errors) {
    let kind = preset.kind().as_str();
    let path = format!("{at}.{kind}");
    if let Some(secret) = preset.connection_secret()
        && !is_object_name(secret)
    {
        errors.add(
            format!("{path}.connectionSecret"),
            format!("{secret:?} is not a Secret name"),
        );
    }
    let pvc = &preset.storage().pvc;
    if !is_object_name(pvc) {
        errors.add(
            format!("{path}.storage.pvc"),
            format!("{pvc:?} is not a PersistentVolumeClaim name"),
        );
    }
    if let BackupPreset::Volume(volume) = preset {
        if !is_object_name(&volume.claim) {
            errors.add(
                format!("{path}.claim"),
                format!("{:?} is not a PersistentVolumeClaim name", volume.claim),
            );
        } else if volume.claim == *pvc {
            errors.add(
                format!("{path}.claim"),
                "the archived claim and storage.pvc must differ: a restore replaces the archived claim's whole content, backups included",
            );
        }
    }
}

fn check_secret_key(path: &str, secret: &SecretKeyRef, errors: &mut Errors) {
    if !is_object_name(&secret.name) {
        errors.add(
            format!("{path}.name"),
            format!("{:?} is not a Secret name", secret.name),
        );
    }
    let key = secret.key.as_bytes();
    let valid_key = !key.is_empty()
        && key.len() <= 253
        && key
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid_key {
        errors.add(
            format!("{path}.key"),
            format!(
                "{:?} is not a Secret key (letters, digits, '-', '_' and '.')",
                secret.key
            ),
        );
    }
}

fn check_template(path: &str, template: &PodTemplateSpec, errors: &mut Errors) {
    let Some(pod) = &template.spec else {
        errors.add(
            format!("{path}.spec"),
            "a pod spec with at least one container is needed",
        );
        return;
    };
    if pod.containers.is_empty() {
        errors.add(
            format!("{path}.spec.containers"),
            "at least one container is needed",
        );
    }
    for (i, container) in pod.containers.iter().enumerate() {
        if container.name.is_empty() {
            errors.add(
                format!("{path}.spec.containers[{i}].name"),
                "every container needs a name",
            );
        }
    }
    if let Some(policy) = pod.restart_policy.as_deref()
        && policy != "Never"
        && policy != "OnFailure"
    {
        errors.add(
            format!("{path}.spec.restartPolicy"),
            format!("a Job's pods may restart Never or OnFailure, not {policy:?}"),
        );
    }
}

/// A DNS-1123 subdomain, the rule for Deployment and StatefulSet names.
fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, text: &str) {
        if let Err(message) = duration::parse(text) {
            self.add(path, message);
        }
    }
}
