//! Carries out a decision: the status first (write-ahead), then the Events and the
//! notifications it records, then the actions in order. Every image change of a target
//! (Deployment or StatefulSet) is a server-side apply of a partial body under the operator's
//! one field manager, so it owns only the image fields it sets (invariant 8).

use std::time::Instant;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info};

use crate::api::{
    AppRelease, AppReleaseBackup, AppReleaseRestore, AppReleaseStatus, FIELD_MANAGER, FINALIZER,
    RequestKind, TargetKind,
};
use crate::cache::{Expectations, Expected};
use crate::jobs;
use crate::plan::{Action, Decision, RequestUpdate};

use super::error::Error;
use super::events::Reporter;

/// Writes status, runs actions, publishes events and queues notifications for one AppRelease.
pub struct Executor<'a> {
    /// The API client.
    pub client: &'a Client,
    /// Where Events go.
    pub events: &'a Reporter,
    /// Where the decision's milestones go once its status is written; None sends none.
    pub notifier: Option<&'a crate::notify::Notifier>,
    /// Where the decision's telemetry and Events are counted; None counts nothing.
    pub metrics: Option<&'a crate::metrics::Metrics>,
    /// Where the Jobs it creates and the images it applies are remembered until the caches
    /// show them (`crate::cache::expectations`); None remembers nothing.
    pub expectations: Option<&'a Expectations>,
}

impl Executor<'_> {
    /// Carries out `decision` for `release`. Stops at the first failure: the next reconcile
    /// decides again from what is then observed.
    /// The finalizer goes on before anything else (before the status that starts an upgrade,
    /// so no data Job can exist without it) and comes off after everything else.
    pub async fn execute(&self, release: &AppRelease, decision: &Decision) -> Result<(), Error> {
        let namespace = release.namespace().unwrap_or_default();
        let holds = has_finalizer(release);
        // The version of the AppRelease the decision was made from, as far as our own writes
        // in this reconcile moved it.
        let mut version = release.resource_version();
        if decision.finalizer && !holds {
            version = self
                .patch_finalizers(release, &namespace, add_finalizer_patch(release), true)
                .await?;
        }
        let changed = release.status.as_ref() != Some(&decision.status);
        // A decision that changes no status but does something is as unsafe from a stale
        // copy as one that does: a Job it creates may be one the stored status records as
        // seen and since deleted, an image it applies one a newer status rolled back. So it
        // is conditioned on the version decided from as well, by a patch that only tests it:
        // one that changes nothing, so no new resourceVersion and no watch event.
        let acts = !(decision.actions.is_empty()
            && decision.requests.is_empty()
            && decision.notes.is_empty()
            && decision.milestones.is_empty())
            || (holds && !decision.finalizer);
        // (Without a resourceVersion, only in tests, there is nothing to test.)
        if changed || (acts && version.is_some()) {
            let api: Api<AppRelease> = Api::namespaced(self.client.clone(), &namespace);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            let status = changed.then_some(&decision.status);
            let patch: Patch<()> = Patch::Json(status_patch(status, version.as_deref()));
            match api.patch_status(&release.name_any(), &params, &patch).await {
                Ok(_) => {}
                // The decision was made from an AppRelease older than the stored one (a
                // cache that lags our own last write, or another writer): nothing is done,
                // and the next reconcile decides again from fresh state.
                Err(kube::Error::Api(status)) if status.code == 422 || status.code == 409 => {
                    return Err(Error::Stale(kube::Error::Api(status)));
                }
                Err(error) => return Err(Error::WriteStatus(error)),
            }
            // Counted here, once the write landed, and never from a refused one: the write
            // tests the version decided from, so each transition is written, and counted,
            // exactly once.
            if changed {
                self.record(&decision.telemetry);
            }
        }
        let reference = release.object_ref(&());
        for note in &decision.notes {
            self.events.publish(&reference, note).await;
            if let Some(metrics) = self.metrics {
                metrics
                    .events
                    .get_or_create(&crate::metrics::EventLabels {
                        reason: note.reason.clone(),
                    })
                    .inc();
            }
        }
        // Queued, not sent: a webhook never holds up the actions, however slow it is.
        if let Some(notifier) = self.notifier {
            notifier.notify(release, &decision.milestones);
        }
        for update in &decision.requests {
            self.write_request_status(&namespace, update).await?;
        }
        for action in &decision.actions {
            self.act(release, &namespace, action).await?;
        }
        if !decision.finalizer
            && holds
            && let Some(patch) = remove_finalizer_patch(release)
        {
            self.patch_finalizers(release, &namespace, patch, false)
                .await?;
        }
        Ok(())
    }

    /// Logs and counts what a written status changed.
    fn record(&self, telemetry: &crate::plan::Telemetry) {
        for step in &telemetry.steps {
            // `left`: the span's `step` is the one the decision moved to.
            info!(left = %step.step.as_str(), seconds = step.seconds, "step done");
        }
        for ended in &telemetry.upgrades {
            info!(
                result = %crate::metrics::result_label(ended.result),
                reason = %ended.reason,
                "upgrade ended"
            );
        }
        if let Some(metrics) = self.metrics {
            metrics.record(telemetry);
        }
    }

    /// Writes the status of an on-demand request (merge patch of its status subresource).
    /// A request deleted meanwhile needs no status.
    async fn write_request_status(
        &self,
        namespace: &str,
        update: &RequestUpdate,
    ) -> Result<(), Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = Patch::Merge(json!({ "status": update.status }));
        let result = match update.kind {
            RequestKind::Backup => {
                Api::<AppReleaseBackup>::namespaced(self.client.clone(), namespace)
                    .patch_status(&update.name, &params, &patch)
                    .await
                    .map(drop)
            }
            RequestKind::Restore => {
                Api::<AppReleaseRestore>::namespaced(self.client.clone(), namespace)
                    .patch_status(&update.name, &params, &patch)
                    .await
                    .map(drop)
            }
        };
        if result.is_ok()
            && let Some(note) = &update.note
        {
            let kind = match update.kind {
                RequestKind::Backup => "AppReleaseBackup",
                RequestKind::Restore => "AppReleaseRestore",
            };
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("apprelease.io/v1alpha1".into()),
                kind: Some(kind.into()),
                name: Some(update.name.clone()),
                namespace: Some(namespace.to_string()),
                uid: Some(update.uid.clone()),
                ..Default::default()
            };
            self.events.publish(&reference, note).await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::WriteRequestStatus {
                name: update.name.clone(),
                source,
            }),
        }
    }

    /// Applies a finalizer patch and returns the AppRelease's new resourceVersion. When its
    /// test fails (422) because the release read from the cache was older than the stored
    /// one, the stored one is read: if it already has the finalizer as `wanted`, there is
    /// nothing left to do here — and the version decided from is returned unchanged, so that
    /// the status write that follows is refused as stale instead of acting on an old copy.
    async fn patch_finalizers(
        &self,
        release: &AppRelease,
        namespace: &str,
        patch: json_patch::Patch,
        wanted: bool,
    ) -> Result<Option<String>, Error> {
        let api: Api<AppRelease> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let name = release.name_any();
        match api.patch(&name, &params, &Patch::<()>::Json(patch)).await {
            Ok(updated) => Ok(updated.resource_version()),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                let stored = api.get(&name).await.map_err(Error::Finalizer)?;
                if has_finalizer(&stored) == wanted {
                    Ok(release.resource_version())
                } else {
                    Err(Error::Finalizer(kube::Error::Api(status)))
                }
            }
            Err(error) => Err(Error::Finalizer(error)),
        }
    }

    async fn act(
        &self,
        release: &AppRelease,
        namespace: &str,
        action: &Action,
    ) -> Result<(), Error> {
        match action {
            Action::CreateJob(request) => {
                let job = jobs::build(release, request)?;
                self.create_or_adopt(release, namespace, &job, &request.name)
                    .await
            }
            Action::SetImages {
                kind,
                deployment,
                images,
            } => {
                info!(%kind, name = deployment, ?images, "applying images");
                let body = Patch::Apply(image_body(*kind, deployment, images));
                let applied = match kind {
                    TargetKind::Deployment => {
                        Api::<Deployment>::namespaced(self.client.clone(), namespace)
                            .patch(deployment, &apply_params(), &body)
                            .await
                            .map(|d| d.metadata.generation)
                    }
                    TargetKind::StatefulSet => {
                        Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
                            .patch(deployment, &apply_params(), &body)
                            .await
                            .map(|s| s.metadata.generation)
                    }
                };
                let generation = applied.map_err(|source| Error::ApplyImages {
                    kind: *kind,
                    name: deployment.clone(),
                    source,
                })?;
                if let Some(generation) = generation {
                    self.expect(
                        release,
                        Expected::Generation {
                            kind: *kind,
                            name: deployment.clone(),
                            generation,
                        },
                    );
                }
                Ok(())
            }
            Action::HandOver { job } => {
                let owner = release
                    .controller_owner_ref(&())
                    .ok_or(Error::BuildJob(crate::jobs::BuildError::NoOwner))?;
                info!(job, "handing the finished Job to its AppRelease");
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                Api::<Job>::namespaced(self.client.clone(), namespace)
                    .patch(
                        job,
                        &params,
                        &Patch::Merge(json!({"metadata": {"ownerReferences": [owner]}})),
                    )
                    .await
                    .map(drop)
                    .map_err(|source| Error::HandOver {
                        name: job.clone(),
                        source,
                    })
            }
            Action::Scale {
                kind,
                deployment,
                replicas,
            } => {
                info!(%kind, name = deployment, replicas, "scaling");
                // Replicas go through the scale subresource as an update, not through our apply
                // set: an apply that later left them out would reset them to the default.
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
                let scaled = match kind {
                    TargetKind::Deployment => {
                        Api::<Deployment>::namespaced(self.client.clone(), namespace)
                            .patch_scale(deployment, &params, &patch)
                            .await
                            .map(drop)
                    }
                    TargetKind::StatefulSet => {
                        Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
                            .patch_scale(deployment, &params, &patch)
                            .await
                            .map(drop)
                    }
                };
                scaled.map_err(|source| Error::Scale {
                    kind: *kind,
                    name: deployment.clone(),
                    source,
                })
            }
            Action::DeletePod { pod, uid } => {
                info!(
                    pod,
                    "deleting a StatefulSet pod stuck on the failed version"
                );
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .delete(pod, &params)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Gone already, or replaced by a pod of the same name (another uid): the
                    // pod this decision saw is not there any more, which is what was wanted.
                    Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                        debug!(pod, code = status.code, "pod already gone");
                        Ok(())
                    }
                    Err(source) => Err(Error::DeletePod {
                        name: pod.clone(),
                        source,
                    }),
                }
            }
        }
    }

    /// Creates the Job; when it already exists (a restart after the create, or a cache that
    /// lagged) adopts it if this AppRelease owns it (invariant 3).
    async fn create_or_adopt(
        &self,
        release: &AppRelease,
        namespace: &str,
        job: &Job,
        name: &str,
    ) -> Result<(), Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.create(&params, job).await {
            Ok(_) => {
                info!(job = name, "created Job");
                self.expect(release, Expected::Job { name: name.into() });
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(name).await.map_err(|source| Error::CreateJob {
                    name: name.into(),
                    source,
                })?;
                if !super::observe::belongs_to(&existing, release) {
                    return Err(Error::ForeignJob { name: name.into() });
                }
                debug!(job = name, "Job exists already; adopted");
                self.expect(release, Expected::Job { name: name.into() });
                Ok(())
            }
            Err(source) => Err(Error::CreateJob {
                name: name.into(),
                source,
            }),
        }
    }

    /// Remembers a write of this reconcile until the caches show it.
    fn expect(&self, release: &AppRelease, what: Expected) {
        if let Some(expectations) = self.expectations {
            let namespace = release.namespace().unwrap_or_default();
            expectations.expect(&namespace, &release.name_any(), what, Instant::now());
        }
    }
}

/// Whether the AppRelease carries the operator's finalizer.
pub fn has_finalizer(release: &AppRelease) -> bool {
    release.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer, and nothing else: the only write the operator makes to an AppRelease
/// outside its status (invariant 4). The list is replaced whole, on the condition that the
/// object is still the version that was read, so another finalizer added meanwhile is not
/// lost (the patch fails and the next reconcile reads again).
pub fn add_finalizer_patch(release: &AppRelease) -> json_patch::Patch {
    let mut finalizers = release.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    json_patch::Patch(vec![
        test_op(
            "/metadata/resourceVersion",
            json!(release.resource_version()),
        ),
        json_patch::PatchOperation::Add(json_patch::AddOperation {
            path: pointer(&["metadata", "finalizers"]),
            value: json!(finalizers),
        }),
    ])
}

/// Removes the finalizer by its index, on the condition that it is still there (the status
/// write before it changed the resourceVersion, but never the finalizers).
pub fn remove_finalizer_patch(release: &AppRelease) -> Option<json_patch::Patch> {
    let index = release.finalizers().iter().position(|f| f == FINALIZER)?;
    let path = format!("/metadata/finalizers/{index}");
    Some(json_patch::Patch(vec![
        test_op(&path, json!(FINALIZER)),
        json_patch::PatchOperation::Remove(json_patch::RemoveOperation {
            path: pointer(&["metadata", "finalizers", &index.to_string()]),
        }),
    ]))
}

fn test_op(path: &str, value: Value) -> json_patch::PatchOperation {
    json_patch::PatchOperation::Test(json_patch::TestOperation {
        path: json_patch::jsonptr::PointerBuf::parse(path).unwrap_or_default(),
        value,
    })
}

fn pointer(tokens: &[&str]) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::from_tokens(tokens.iter().copied())
}

/// `?fieldManager=apprelease-operator&force=true`: the operator's changes win over another
/// manager's claim on the same image field (a GitOps tool told to ignore it).
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The partial Deployment or StatefulSet an image change applies: nothing but the named
/// containers' images. Never a typed object from `Default`, which would claim an empty
/// selector and template.
pub fn image_body(kind: TargetKind, name: &str, images: &[(String, String)]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": containers}}},
    })
}

/// Replaces the whole status in one JSON patch (`add` replaces an existing member). The
/// operator is the only writer of status, and a wholesale replacement makes fields it stops
/// sending (a finished `upgrade`) disappear — where a server-side apply may leave an empty
/// parent object behind that then fails the schema's required fields.
///
/// With `version`, the patch first tests that the stored AppRelease is still that
/// resourceVersion: a write-ahead record decided from a stale copy must never land (the
/// server refuses the whole patch, 422, when the test fails). Without `status` it is that
/// test alone: the precondition of a decision that changes no status.
pub fn status_patch(status: Option<&AppReleaseStatus>, version: Option<&str>) -> json_patch::Patch {
    let mut ops: Vec<json_patch::PatchOperation> = version
        .map(|v| test_op("/metadata/resourceVersion", json!(v)))
        .into_iter()
        .collect();
    if let Some(status) = status {
        ops.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
            path: json_patch::jsonptr::PointerBuf::from_tokens(["status"]),
            value: serde_json::to_value(status).unwrap_or(Value::Null),
        }));
    }
    json_patch::Patch(ops)
}
