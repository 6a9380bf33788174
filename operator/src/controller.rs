//! The kube-runtime wiring: watch AppReleases, the Jobs they own (and those Jobs' pods), the
//! Deployments and StatefulSets they target and the requests naming them, into the caches a
//! reconcile reads (`crate::cache`); reconcile each AppRelease by observe → decide → act;
//! retry failures with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::{
    Action, Config as ControllerConfig, Controller, Error as ControllerError,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::field::{Empty, display};
use tracing::{Instrument, Span, info, info_span, warn};

use crate::api::conditions::{self, ConditionStatus, Desired};
use crate::api::{
    AppRelease, AppReleaseBackup, AppReleaseRestore, FIELD_MANAGER, ReleaseRequest, TargetKind,
};
use crate::backoff::Backoff;
use crate::cache::{Caches, Index, trim};
use crate::jobs::build::{MANAGED_BY, RELEASE_LABEL};
use crate::k8s::{self, Executor, Reporter};
use crate::metrics::{Census, ErrorLabels, Metrics, ResultLabels};
use crate::notify::Notifier;
use crate::plan::{self, Note, NoteType};
use crate::queue::{Gate, Lane, Waiting};
use crate::shutdown::Shutdown;

/// An AppRelease as read from the API: malformed ones (possible where the server did not
/// enforce the schema) still reach `reconcile`, which reports them instead of the watch
/// failing for every AppRelease.
pub type Guarded = DeserializeGuard<AppRelease>;

/// How soon a reconcile whose status write met a newer AppRelease is tried again.
const STALE_RETRY: Duration = Duration::from_millis(200);

/// What `run` needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch one namespace only; None watches all.
    pub namespace: Option<String>,
    /// AppReleases reconciled at the same time, at most.
    pub concurrency: u16,
    /// How webhook notifications are retried.
    pub notify: crate::notify::Policy,
}

/// How long the messages still queued at shutdown may take to go out.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// Shared by every reconciliation.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Event publisher.
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Failure counts for backoff.
    pub backoff: Backoff,
    /// The controller's cache of AppReleases.
    pub releases: Store<Guarded>,
    /// Webhook notifications of upgrade milestones.
    pub notifier: Notifier,
    /// The AppReleases woken and waiting for their reconcile.
    pub waiting: Arc<Waiting>,
    /// What reconciles read instead of the API.
    pub caches: Arc<Caches>,
    /// Admits `--concurrency` reconciles at a time, spec changes first.
    pub gate: Gate,
}

/// Runs the controller until `shutdown` is requested and the reconciles in flight have
/// finished (kube-runtime's graceful shutdown: no new reconciles start, the watches end, the
/// running ones complete, then the stream ends), then gives queued webhook messages a moment;
/// `on_ready` is called once the AppRelease cache is filled. Dropping the future instead
/// stops at once: kube-runtime runs each reconcile as a task that is aborted with its handle
/// (`CancelableJoinHandle`), at its next await.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    on_ready: impl FnOnce() + Send + 'static,
) {
    let releases: Api<Guarded> = scoped(&client, &settings.namespace);
    let jobs: Api<Job> = scoped(&client, &settings.namespace);
    let pods: Api<Pod> = scoped(&client, &settings.namespace);
    let deployments: Api<Deployment> = scoped(&client, &settings.namespace);
    let stateful_sets: Api<StatefulSet> = scoped(&client, &settings.namespace);
    let backups: Api<AppReleaseBackup> = scoped(&client, &settings.namespace);
    let restores: Api<AppReleaseRestore> = scoped(&client, &settings.namespace);

    // The AppRelease reflector is built here rather than by `Controller::new` so that
    // readiness is read off the watch stream itself. A second `store.wait_until_ready()` next
    // to the controller's own would never return: kube-runtime's store readiness is a oneshot
    // receiver that keeps a single waker, so two waiters overwrite each other's and one of
    // them is never woken (that was `/readyz` answering 503 forever). Otherwise this is what
    // `Controller::new` does: the same reflector and watcher config, no backoff of its own
    // (the controller's trigger backoff covers the stream), applied objects as triggers.
    let (store, writer) = reflector::store::<Guarded>();
    let waiting = Arc::new(Waiting::new(metrics.queue_depth.clone()));
    let caches = Arc::new(Caches::default());
    let mut on_ready = Some(on_ready);
    let triggers = watcher(releases, watcher::Config::default())
        .modify(trim::release)
        .reflect(writer)
        .inspect(following(&caches.releases))
        .inspect(move |event| {
            // The writer has applied InitDone by now: the store holds every AppRelease.
            if let Ok(watcher::Event::InitDone) = event
                && let Some(ready) = on_ready.take()
            {
                ready();
            }
        })
        .applied_objects()
        .inspect({
            let waiting = waiting.clone();
            move |event| {
                if let Ok(release) = event {
                    waiting.woke([ObjectRef::from_obj(release)]);
                }
            }
        });
    // No AppRelease is reconciled before the other caches hold their first list: until then
    // a target or a Job would look missing. Their watches run meanwhile (the controller polls
    // every trigger stream at once); the AppReleases' starts after them.
    let triggers = futures::stream::once({
        let caches = caches.clone();
        async move {
            caches.wait_synced().await;
            triggers
        }
    })
    .flatten();
    let controller = Controller::for_stream(triggers, store.clone());
    // Until this returns or is dropped: a term of leadership.
    let _counting = metrics.count_releases({
        let store = store.clone();
        move || Census::of(store.state().iter().filter_map(|g| g.0.as_ref().ok()))
    });
    let reporter = Reporter::new(client.clone());
    let notifier = Notifier::new(
        client.clone(),
        reporter.clone(),
        metrics.clone(),
        settings.notify.clone(),
    );
    let context = Arc::new(Context {
        reporter,
        client,
        metrics,
        backoff: Backoff::default(),
        releases: store.clone(),
        notifier: notifier.clone(),
        waiting: waiting.clone(),
        caches: caches.clone(),
        gate: Gate::new(settings.concurrency.into()),
    });
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    // Requests naming no existing AppRelease are told so by a controller of their own: the
    // release's controller never runs for a release that does not exist.
    let orphans = futures::future::join(
        orphan_watch::<AppReleaseBackup>(context.clone(), &settings.namespace, &shutdown),
        orphan_watch::<AppReleaseRestore>(context.clone(), &settings.namespace, &shutdown),
    );
    let releases_controller = controller
        // By label, not `owns`: a data Job runs without an owner reference (see jobs::build).
        .watches_stream(
            cached(
                jobs,
                watcher::Config::default().labels(&managed),
                trim::job,
                &caches.jobs,
            ),
            {
                let waiting = waiting.clone();
                move |job| waiting.woke(job_release(job))
            },
        )
        // Only cached: a Job's own change wakes its release, and a finished Job's pods are
        // read from the API if their watch is behind (`k8s::observe`).
        .watches_stream(
            cached(
                pods,
                watcher::Config::default().labels(RELEASE_LABEL),
                trim::pod,
                &caches.pods,
            ),
            |_| None,
        )
        .watches_stream(
            cached(
                deployments,
                watcher::Config::default(),
                trim::deployment,
                &caches.deployments,
            ),
            waking_targeting(&caches, &waiting, TargetKind::Deployment),
        )
        .watches_stream(
            cached(
                stateful_sets,
                watcher::Config::default(),
                trim::stateful_set,
                &caches.stateful_sets,
            ),
            waking_targeting(&caches, &waiting, TargetKind::StatefulSet),
        )
        // An on-demand request wakes the release it names.
        .watches_stream(
            cached(backups, watcher::Config::default(), |_| {}, &caches.backups),
            {
                let waiting = waiting.clone();
                move |b: AppReleaseBackup| waiting.woke(named_release(&b, &b.spec.release))
            },
        )
        .watches_stream(
            cached(
                restores,
                watcher::Config::default(),
                |_| {},
                &caches.restores,
            ),
            {
                let waiting = waiting.clone();
                move |r: AppReleaseRestore| waiting.woke(named_release(&r, &r.spec.release))
            },
        )
        // Unbounded here: the gate bounds them, in its own order (`crate::queue`).
        .with_config(ControllerConfig::default().concurrency(0))
        .graceful_shutdown_on(shutdown.requested())
        .run(reconcile, error_policy, context)
        .for_each(move |result| {
            match result {
                // A trigger for an AppRelease that no longer exists: no reconcile will take it.
                Err(ControllerError::ObjectNotFound(gone)) => {
                    waiting.taken(gone.namespace.as_deref(), &gone.name);
                }
                // Errors of the watches themselves (RBAC, connectivity) surface here; without
                // this log they would only show as silent backoff.
                Err(error) => warn!(%error, "controller stream error"),
                Ok(_) => {}
            }
            std::future::ready(())
        });
    futures::future::join(releases_controller, orphans).await;
    if !notifier.drain(NOTIFY_DRAIN).await {
        warn!(limit = ?NOTIFY_DRAIN, "stopping with webhook notifications still queued");
    }
    info!("controller stopped");
}

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The other AppReleases of the release's namespace that list one of its targets, from the
/// cache: the only ones a claim can be about (`plan::claims`).
fn peers(ctx: &Context, release: &AppRelease) -> Vec<plan::Peer> {
    let namespace = release.namespace().unwrap_or_default();
    let names: std::collections::BTreeSet<String> = release
        .spec
        .targets
        .iter()
        .flat_map(|t| {
            ctx.caches
                .releases_targeting(&namespace, t.kind(), t.name())
        })
        .filter(|name| *name != release.name_any())
        .collect();
    names
        .iter()
        .filter_map(|name| ctx.releases.get(&ObjectRef::new(name).within(&namespace)))
        .filter_map(|guarded| guarded.0.as_ref().ok().map(k8s::observe::peer))
        .collect()
}

/// A watch whose objects are trimmed and followed by `index`, as a trigger stream.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    index: &Index<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher(api, config)
        .modify(trim)
        .inspect(following(index))
        .touched_objects()
}

/// Applies each event of a watch to `index`.
fn following<K>(index: &Index<K>) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K>
where
    K: Resource + Clone,
{
    let index = index.clone();
    move |event| {
        if let Ok(event) = event {
            index.apply(event);
        }
    }
}

/// The AppRelease a Job of ours belongs to, from its release label.
fn job_release(job: Job) -> Option<ObjectRef<Guarded>> {
    let release = job.labels().get(RELEASE_LABEL)?;
    Some(ObjectRef::new(release).within(job.namespace().as_deref().unwrap_or_default()))
}

/// Watches the requests of kind `K` and says, on those whose AppRelease does not exist, that
/// they wait for it; the rest are the release controller's.
async fn orphan_watch<K>(ctx: Arc<Context>, namespace: &Option<String>, shutdown: &Shutdown)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + ReleaseRequest
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = scoped(&ctx.client, namespace);
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown.requested())
        .run(
            reconcile_orphan::<K>,
            |_, error, _| {
                warn!(%error, "writing the status of a request");
                Action::requeue(Duration::from_secs(10))
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "request controller stream error");
            }
        })
        .await;
}

async fn reconcile_orphan<K>(request: Arc<K>, ctx: Arc<Context>) -> Result<Action, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + ReleaseRequest
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let namespace = request.namespace().unwrap_or_default();
    let named = ObjectRef::<Guarded>::new(request.release()).within(&namespace);
    if ctx.releases.get(&named).is_some() {
        return Ok(Action::await_change());
    }
    let Some(status) = plan::orphaned(
        request.request_status(),
        request.release(),
        &namespace,
        request.meta().generation.unwrap_or(0),
        Utc::now(),
    ) else {
        return Ok(Action::await_change());
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    Api::<K>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &request.name_any(),
            &params,
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    // Looked at again now and then: the release may be created later, and its own
    // controller takes the request over then.
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The AppRelease an on-demand request names, in its namespace.
fn named_release<K: Resource>(request: &K, release: &str) -> Option<ObjectRef<Guarded>> {
    Some(ObjectRef::new(release).within(request.namespace().as_deref().unwrap_or_default()))
}

/// Wakes the AppReleases that list a changed workload of `kind` among their targets.
fn waking_targeting<K: Resource>(
    caches: &Arc<Caches>,
    waiting: &Arc<Waiting>,
    kind: TargetKind,
) -> impl Fn(K) -> Vec<ObjectRef<Guarded>> + use<K> {
    let (caches, waiting) = (caches.clone(), waiting.clone());
    move |workload| waiting.woke(releases_targeting(&caches, kind, &workload))
}

/// The AppReleases that list a workload (a Deployment or a StatefulSet: `kind`) among their
/// targets, so that a rollout's progress wakes them.
fn releases_targeting<K: Resource>(
    caches: &Caches,
    kind: TargetKind,
    workload: &K,
) -> Vec<ObjectRef<Guarded>> {
    let namespace = workload.namespace().unwrap_or_default();
    caches
        .releases_targeting(&namespace, kind, &workload.name_any())
        .iter()
        .map(|name| ObjectRef::new(name).within(&namespace))
        .collect()
}

/// Waits for a turn at the gate, then reconciles the AppRelease as the cache has it by then.
/// The reconcile proper is boxed, so that a reconcile waiting for its turn (there may be one
/// for every AppRelease during a cold start) holds only this small future.
async fn reconcile(guarded: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, k8s::Error> {
    let reference = ObjectRef::from_obj(&*guarded);
    let namespace = guarded.meta().namespace.clone().unwrap_or_default();
    let _turn = ctx.gate.enter(lane(&guarded), &namespace).await;
    let Some(latest) = ctx.releases.get(&reference) else {
        // Deleted while it waited; the controller's next trigger for it finds it gone.
        ctx.waiting
            .taken(reference.namespace.as_deref(), &reference.name);
        return Ok(Action::await_change());
    };
    Box::pin(reconcile_latest(latest, ctx)).await
}

/// Spec changes (and deletions) go before rollout progress: they are what someone waits for.
fn lane(guarded: &Guarded) -> Lane {
    match &guarded.0 {
        Ok(release) => {
            let answered = release.status.as_ref().and_then(|s| s.observed_generation)
                == release.metadata.generation;
            if answered && release.metadata.deletion_timestamp.is_none() {
                Lane::Routine
            } else {
                Lane::Urgent
            }
        }
        Err(_) => Lane::Urgent,
    }
}

async fn reconcile_latest(guarded: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, k8s::Error> {
    let started = Instant::now();
    // Every line logged while reconciling (the executor's too) carries the release, its
    // namespace and, once decided, the upgrade's versions and step.
    let meta = guarded.meta();
    ctx.waiting.taken(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let span = info_span!(
        "reconcile",
        release = %meta.name.as_deref().unwrap_or_default(),
        namespace = %meta.namespace.as_deref().unwrap_or_default(),
        from = Empty,
        to = Empty,
        attempt = Empty,
        step = Empty,
    );
    let result = async {
        match &guarded.0 {
            Ok(release) => reconcile_release(release, &ctx).await,
            Err(invalid) => report_malformed(invalid, &ctx).await,
        }
    }
    .instrument(span)
    .await;
    let labels = ResultLabels {
        result: if result.is_ok() { "ok" } else { "error" },
    };
    ctx.metrics
        .duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.reconciliations.get_or_create(&labels).inc();
    result
}

async fn reconcile_release(release: &AppRelease, ctx: &Context) -> Result<Action, k8s::Error> {
    let deleting = release.metadata.deletion_timestamp.is_some();
    if deleting && !k8s::act::has_finalizer(release) {
        // Nothing was in flight: the Jobs it owns are garbage-collected with it; Deployments
        // and volumes are never touched on deletion.
        return Ok(Action::await_change());
    }
    let observed = k8s::observe::observe(
        &ctx.client,
        &ctx.caches,
        release,
        peers(ctx, release),
        Utc::now(),
    )
    .await?;
    let decision = if deleting {
        plan::decide_deletion(release, &observed)
    } else {
        plan::decide(release, &observed)
    };
    // The upgrade decided on, or the one this decision ended.
    let read = release.status.as_ref().and_then(|s| s.upgrade.as_ref());
    if let Some(upgrade) = decision.status.upgrade.as_ref().or(read) {
        let span = Span::current();
        span.record("from", display(&upgrade.from));
        span.record("to", display(&upgrade.to));
        span.record("attempt", upgrade.attempt);
        span.record("step", display(upgrade.step.as_str()));
    }
    if decision.status.upgrade.is_some() {
        info!(actions = decision.actions.len(), "reconciled");
    }
    Executor {
        client: &ctx.client,
        events: &ctx.reporter,
        notifier: Some(&ctx.notifier),
        metrics: Some(&ctx.metrics),
        expectations: Some(&ctx.caches.expectations),
    }
    .execute(release, &decision)
    .await?;
    ctx.backoff.succeeded(&key(release.meta()));
    Ok(Action::requeue(decision.requeue_after))
}

/// An AppRelease that does not even parse: say so in its conditions and an Event, and wait
/// for it to change. Only conditions and observedGeneration are written, by merge patch,
/// since the rest of its status may be what failed to parse.
async fn report_malformed(invalid: &InvalidObject, ctx: &Context) -> Result<Action, k8s::Error> {
    let meta = &invalid.metadata;
    let (name, namespace) = (
        meta.name.clone().unwrap_or_default(),
        meta.namespace.clone().unwrap_or_default(),
    );
    let generation = meta.generation.unwrap_or(0);
    let message = format!(
        "the AppRelease does not match its schema, nothing was changed: {}",
        invalid.error
    );
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &ApiResource::erase::<AppRelease>(&()),
    );
    let current = api.get_status(&name).await.ok();
    let said = current
        .as_ref()
        .and_then(|o| o.data.pointer("/status/conditions"))
        .and_then(|c| serde_json::from_value::<Vec<conditions::Condition>>(c.clone()).ok())
        .and_then(|list| conditions::get(&list, conditions::READY).cloned())
        .is_some_and(|c| c.message == message && c.observed_generation == generation);
    if said {
        return Ok(Action::await_change());
    }
    let mut list = Vec::new();
    let stalled = Desired::new(ConditionStatus::True, "InvalidSpec", message.clone());
    conditions::set(
        &mut list,
        conditions::READY,
        Some(Desired {
            status: ConditionStatus::False,
            ..stalled.clone()
        }),
        generation,
        Utc::now(),
    );
    conditions::set(
        &mut list,
        conditions::STALLED,
        Some(stalled),
        generation,
        Utc::now(),
    );
    let patch = json!({"status": {"observedGeneration": generation, "conditions": list}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch_status(&name, &params, &Patch::Merge(patch))
        .await
        .map_err(k8s::Error::WriteStatus)?;
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("apprelease.io/v1alpha1".into()),
        kind: Some("AppRelease".into()),
        name: Some(name),
        namespace: Some(namespace),
        uid: meta.uid.clone(),
        ..Default::default()
    };
    let note = Note {
        type_: NoteType::Warning,
        reason: "InvalidSpec".into(),
        message,
    };
    ctx.reporter.publish(&reference, &note).await;
    Ok(Action::await_change())
}

fn error_policy(guarded: Arc<Guarded>, error: &k8s::Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels {
            error: error.metric_label(),
        })
        .inc();
    // A stale read is no failure: the cache catches up within moments.
    let delay: Duration = if matches!(error, k8s::Error::Stale(_) | k8s::Error::CacheBehind(_)) {
        STALE_RETRY
    } else {
        ctx.backoff.failed(&key(guarded.meta()))
    };
    let meta = guarded.meta();
    warn!(
        release = %meta.name.as_deref().unwrap_or_default(),
        namespace = %meta.namespace.as_deref().unwrap_or_default(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn key(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_wakes_its_release_by_label_with_or_without_an_owner() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "meet-migrate-2", "namespace": "apps",
                "labels": {"apprelease.io/release": "meet", "apprelease.io/release-uid": "u1"}}
        }))
        .unwrap();
        let target = job_release(job).expect("mapped");
        assert_eq!(
            (target.name.as_str(), target.namespace.as_deref()),
            ("meet", Some("apps"))
        );
        assert!(job_release(Job::default()).is_none());
    }
}
