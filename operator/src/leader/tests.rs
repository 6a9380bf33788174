use http::{Request, Response, StatusCode};
use kube::client::Body;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;

fn lease(holder: Option<&str>, duration: Option<i32>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("apprelease-operator".into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: duration,
            ..Default::default()
        }),
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

#[test]
fn what_a_replica_does_with_the_lease_it_reads() {
    let s = Duration::from_secs;
    let standby = |expires_in| Next::StandBy {
        holder: "other".into(),
        expires_in,
    };
    let no_spec = Lease {
        spec: None,
        ..lease(None, None)
    };
    let cases = [
        ("no Lease yet", None, s(0), Next::Create),
        (
            "its own",
            Some(lease(Some("me"), Some(15))),
            s(0),
            Next::Renew,
        ),
        (
            "its own, long unchanged: a container restarted in the same pod",
            Some(lease(Some("me"), Some(15))),
            s(600),
            Next::Renew,
        ),
        (
            "another's, just seen",
            Some(lease(Some("other"), Some(15))),
            s(0),
            standby(s(15)),
        ),
        (
            "another's, unchanged for 14 s",
            Some(lease(Some("other"), Some(15))),
            s(14),
            standby(s(1)),
        ),
        (
            "another's, unchanged for its duration: expired",
            Some(lease(Some("other"), Some(15))),
            s(15),
            Next::Take,
        ),
        (
            "another's, with its own longer duration",
            Some(lease(Some("other"), Some(60))),
            s(30),
            standby(s(30)),
        ),
        (
            "released: empty holder",
            Some(lease(Some(""), Some(1))),
            s(0),
            Next::Take,
        ),
        ("no holder", Some(lease(None, None)), s(0), Next::Take),
        ("no spec", Some(no_spec), s(0), Next::Take),
        (
            "another's without a duration: expired at once, as client-go reads it",
            Some(lease(Some("other"), None)),
            s(0),
            Next::Take,
        ),
        (
            "another's with a negative duration",
            Some(lease(Some("other"), Some(-5))),
            s(0),
            Next::Take,
        ),
    ];
    for (what, lease, unchanged_for, expected) in cases {
        assert_eq!(
            next(lease.as_ref(), "me", unchanged_for),
            expected,
            "{what}"
        );
    }
}

#[test]
fn claiming_renews_takes_over_or_creates() {
    let timing = Timing::default();
    let held = LeaseSpec {
        holder_identity: Some("me".into()),
        acquire_time: Some(MicroTime(at(0))),
        renew_time: Some(MicroTime(at(5))),
        lease_duration_seconds: Some(15),
        lease_transitions: Some(3),
        preferred_holder: Some("someone".into()),
        ..Default::default()
    };
    let renewed = claim(Some(&held), "me", &timing, at(10));
    assert_eq!(
        renewed,
        LeaseSpec {
            renew_time: Some(MicroTime(at(10))),
            ..held.clone()
        },
        "a renewal moves renewTime only"
    );

    let theirs = LeaseSpec {
        holder_identity: Some("other".into()),
        lease_duration_seconds: Some(60),
        ..held.clone()
    };
    assert_eq!(
        claim(Some(&theirs), "me", &timing, at(20)),
        LeaseSpec {
            holder_identity: Some("me".into()),
            acquire_time: Some(MicroTime(at(20))),
            renew_time: Some(MicroTime(at(20))),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(4),
            preferred_holder: Some("someone".into()),
            ..Default::default()
        },
        "a takeover: acquired now, one more transition, our duration, the rest kept"
    );

    let new = claim(None, "me", &timing, at(30));
    assert_eq!(new.lease_transitions, Some(0), "a new Lease");
    assert_eq!(new.acquire_time, Some(MicroTime(at(30))));
    assert_eq!(new.holder_identity.as_deref(), Some("me"));
}

#[test]
fn releasing_empties_the_holder_and_keeps_the_count() {
    let held = LeaseSpec {
        holder_identity: Some("me".into()),
        acquire_time: Some(MicroTime(at(0))),
        renew_time: Some(MicroTime(at(5))),
        lease_duration_seconds: Some(15),
        lease_transitions: Some(3),
        ..Default::default()
    };
    let free = released(&held, at(7));
    assert_eq!(
        free,
        LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(at(7))),
            ..held
        }
    );
    let lease = Lease {
        spec: Some(free),
        ..lease(None, None)
    };
    assert_eq!(next(Some(&lease), "other", Duration::ZERO), Next::Take);
}

#[test]
fn a_lease_is_seen_unchanged_from_its_last_change() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut seen = None;
    assert_eq!(
        Seen::observe(&mut seen, "1", t0),
        Duration::ZERO,
        "first look"
    );
    assert_eq!(Seen::observe(&mut seen, "1", t0 + s(4)), s(4));
    assert_eq!(
        Seen::observe(&mut seen, "2", t0 + s(6)),
        Duration::ZERO,
        "changed"
    );
    assert_eq!(Seen::observe(&mut seen, "2", t0 + s(20)), s(14));
}

#[test]
fn the_default_timing_stops_a_leader_well_before_anyone_may_take_over() {
    let t = Timing::default();
    assert_eq!(
        (
            t.lease_duration.as_secs(),
            t.renew_period.as_secs(),
            t.renew_deadline.as_secs(),
            t.retry_period.as_secs()
        ),
        (15, 5, 10, 2)
    );
    // client-go's checks (leaderelection.go NewLeaderElector): leaseDuration > renewDeadline
    // > 1.2 × retryPeriod; and a renewal is due before the deadline, with retries between.
    assert!(t.renew_deadline < t.lease_duration);
    assert!(t.renew_deadline.as_secs_f64() > 1.2 * t.retry_period.as_secs_f64());
    assert!(t.renew_period + t.retry_period < t.renew_deadline);
    assert_eq!(
        t.standby_wait(Duration::from_millis(300)),
        Duration::from_millis(300)
    );
    assert_eq!(t.standby_wait(Duration::from_secs(9)), t.retry_period);
}

#[test]
fn the_lease_namespace_and_identity_defaults() {
    assert_eq!(
        lease_namespace(Some("ops".into()), Some("pods-ns".into())),
        "ops"
    );
    assert_eq!(lease_namespace(None, Some("pods-ns\n".into())), "pods-ns");
    assert_eq!(lease_namespace(None, Some(" ".into())), "apprelease-system");
    assert_eq!(lease_namespace(None, None), "apprelease-system");

    assert_eq!(
        identity(
            Some("apprelease-operator-7d9-x2".into()),
            Some("host".into()),
            7
        ),
        "apprelease-operator-7d9-x2"
    );
    assert_eq!(
        identity(Some(String::new()), Some("host\n".into()), 7),
        "host_7"
    );
    assert_eq!(identity(None, None, 42), "localhost_42");
}

proptest! {
    #[test]
    fn another_replicas_lease_is_taken_exactly_when_expired(
        duration in 0i32..120,
        unchanged_ms in 0u64..200_000,
        holder in "[a-z]{1,8}",
    ) {
        prop_assume!(holder != "me");
        let lease = lease(Some(&holder), Some(duration));
        let unchanged = Duration::from_millis(unchanged_ms);
        let lasts = Duration::from_secs(duration as u64);
        let expected = if unchanged >= lasts {
            Next::Take
        } else {
            Next::StandBy { holder: holder.clone(), expires_in: lasts - unchanged }
        };
        prop_assert_eq!(next(Some(&lease), "me", unchanged), expected);
    }

    #[test]
    fn the_holder_always_renews_and_keeps_its_acquisition(
        transitions in 0i32..1000,
        unchanged_ms in 0u64..1_000_000,
        later in 1i64..100_000,
    ) {
        let mut lease = lease(Some("me"), Some(15));
        if let Some(spec) = lease.spec.as_mut() {
            spec.lease_transitions = Some(transitions);
            spec.acquire_time = Some(MicroTime(at(0)));
        }
        prop_assert_eq!(next(Some(&lease), "me", Duration::from_millis(unchanged_ms)), Next::Renew);
        let renewed = claim(lease.spec.as_ref(), "me", &Timing::default(), at(later));
        prop_assert_eq!(renewed.lease_transitions, Some(transitions));
        prop_assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        prop_assert_eq!(renewed.renew_time, Some(MicroTime(at(later))));
    }
}

/// What a replica does at one moment of the model below.
#[derive(Clone, Debug)]
enum Act {
    /// Reads the Lease and writes what [`next`] says.
    Look,
    /// SIGKILL; it comes back at its next act (a container restarted in the same pod).
    Crash,
    /// SIGTERM: stops leading, releases the Lease if it holds it, comes back later.
    Terminate,
}

/// One replica of the model: its view of the Lease and, while it believes it leads, since
/// when and when its last renewal was sent.
struct Replica {
    identity: String,
    seen: Option<Seen>,
    leading: Option<(Instant, Instant)>,
}

impl Replica {
    fn new(identity: &str) -> Self {
        Self {
            identity: identity.to_string(),
            seen: None,
            leading: None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Safety of the rules: three replicas acting at arbitrary moments (long stalls, crashes,
    /// releases; any one may go quiet for longer than the lease duration) never believe they
    /// lead at the same time. A replica believes it leads from its write until its next look
    /// finds another holder, or until its renew deadline passes without a renewal.
    ///
    /// Each read and write here is atomic and instantaneous, the worst case for the rule: in
    /// reality a leader's write is sent before it lands (its deadline counts from the
    /// sending), and a standby sees a change only after it landed (its expiry counts from the
    /// seeing), which both shorten the leader's belief relative to the standby's wait.
    #[test]
    fn no_two_replicas_ever_lead_at_once(
        acts in proptest::collection::vec(
            (0usize..3, 0u64..7_000, prop_oneof![8 => Just(Act::Look), 1 => Just(Act::Crash), 1 => Just(Act::Terminate)]),
            1..300,
        ),
    ) {
        let timing = Timing::default();
        let start = Instant::now();
        let mut now = start;
        let mut stored: Option<Lease> = None;
        let mut version = 0u64;
        let mut write = |stored: &mut Option<Lease>, spec: LeaseSpec| -> String {
            version += 1;
            *stored = Some(Lease {
                metadata: ObjectMeta { resource_version: Some(version.to_string()), ..Default::default() },
                spec: Some(spec),
            });
            version.to_string()
        };
        let mut replicas: Vec<Replica> = ["r0", "r1", "r2"].into_iter().map(Replica::new).collect();
        let mut terms: Vec<(usize, Duration, Duration)> = Vec::new();
        let since_start = |t: Instant| t.duration_since(start);
        for (i, gap, act) in acts {
            now += Duration::from_millis(gap);
            let stamp = at(since_start(now).as_secs() as i64);
            let replica = &mut replicas[i];
            if let Some((since, renewed_at)) = replica.leading {
                let stop = timing.stop_leading_at(renewed_at);
                if now >= stop {
                    terms.push((i, since_start(since), since_start(stop)));
                    replica.leading = None;
                }
            }
            match act {
                Act::Crash | Act::Terminate => {
                    if let Some((since, _)) = replica.leading.take() {
                        terms.push((i, since_start(since), since_start(now)));
                    }
                    let spec = stored.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
                    if matches!(act, Act::Terminate)
                        && spec.holder_identity.as_deref() == Some(replica.identity.as_str())
                    {
                        write(&mut stored, released(&spec, stamp));
                    }
                    *replica = Replica::new(&replica.identity.clone());
                }
                Act::Look => {
                    let unchanged = match &stored {
                        Some(l) => Seen::observe(
                            &mut replica.seen,
                            l.metadata.resource_version.as_deref().unwrap_or_default(),
                            now,
                        ),
                        None => Duration::ZERO,
                    };
                    match next(stored.as_ref(), &replica.identity, unchanged) {
                        Next::StandBy { .. } => {
                            if let Some((since, _)) = replica.leading.take() {
                                terms.push((i, since_start(since), since_start(now)));
                            }
                        }
                        Next::Create | Next::Renew | Next::Take => {
                            let old = stored.as_ref().and_then(|l| l.spec.clone());
                            let spec = claim(old.as_ref(), &replica.identity, &timing, stamp);
                            let rv = write(&mut stored, spec);
                            Seen::observe(&mut replica.seen, &rv, now);
                            let since = replica.leading.map_or(now, |(since, _)| since);
                            replica.leading = Some((since, now));
                        }
                    }
                }
            }
        }
        for (i, replica) in replicas.iter().enumerate() {
            if let Some((since, renewed_at)) = replica.leading {
                terms.push((i, since_start(since), since_start(timing.stop_leading_at(renewed_at))));
            }
        }
        for a in &terms {
            for b in &terms {
                if a.0 != b.0 {
                    prop_assert!(!(a.1 < b.2 && b.1 < a.2), "terms {a:?} and {b:?} overlap");
                }
            }
        }
    }
}

/// A mock API server behind a real `kube::Client`: each request is checked and answered in
/// order.
struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// One request as the server saw it.
#[derive(Debug)]
struct Asked {
    method: String,
    path: String,
    body: Value,
}

impl ApiServer {
    fn start() -> (Client, Self) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), Self { handle })
    }

    async fn answer(&mut self, status: u16, body: Value) -> Asked {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
                .await
                .expect("a request within 5s")
                .expect("the client is alive");
        let (parts, body_in) = request.into_parts();
        let bytes = body_in.collect_bytes().await.unwrap();
        let seen = Asked {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            },
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        respond.send_response(response);
        seen
    }
}

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/apprelease-operator";

fn stored(holder: &str, rv: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "apprelease-operator", "namespace": "ops", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions,
                 "acquireTime": "2027-01-01T00:00:00.000000Z", "renewTime": "2027-01-01T00:00:05.000000Z"}
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

fn elector(client: Client, timing: Timing) -> Elector {
    Elector::new(client, "ops", "apprelease-operator", "me", timing)
}

#[tokio::test]
async fn the_first_replica_creates_the_lease() {
    let (client, mut server) = ApiServer::start();
    let acquiring = tokio::spawn(async move {
        elector(client, Timing::default()).acquire(|_| {}).await;
    });
    let get = server.answer(404, status(404, "NotFound")).await;
    assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", PATH));
    let create = server.answer(201, stored("me", "1", 0)).await;
    assert_eq!(create.method, "POST");
    assert_eq!(
        create.path,
        "/apis/coordination.k8s.io/v1/namespaces/ops/leases"
    );
    assert_eq!(create.body["spec"]["holderIdentity"], "me");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(create.body["spec"]["leaseTransitions"], 0);
    tokio::time::timeout(Duration::from_secs(5), acquiring)
        .await
        .expect("acquired")
        .unwrap();
}

#[tokio::test]
async fn a_free_lease_is_taken_with_the_resource_version_read_and_a_lost_race_stands_by() {
    let (client, mut server) = ApiServer::start();
    let (told, mut holders) = tokio::sync::mpsc::unbounded_channel();
    let acquiring = tokio::spawn(async move {
        elector(client, Timing::default())
            .acquire(move |holder| told.send(holder.to_string()).unwrap())
            .await;
    });
    server.answer(200, stored("", "7", 2)).await;
    let take = server.answer(409, status(409, "Conflict")).await;
    assert_eq!((take.method.as_str(), take.path.as_str()), ("PUT", PATH));
    assert_eq!(
        take.body["metadata"]["resourceVersion"], "7",
        "the precondition"
    );
    assert_eq!(take.body["spec"]["holderIdentity"], "me");
    assert_eq!(take.body["spec"]["leaseTransitions"], 3);
    // The other replica won: read again at once, and stand by.
    let again = server.answer(200, stored("other", "8", 3)).await;
    assert_eq!(again.method, "GET");
    let holder = tokio::time::timeout(Duration::from_secs(5), holders.recv()).await;
    assert_eq!(holder.expect("told").as_deref(), Some("other"));
    acquiring.abort();
}

#[tokio::test]
async fn release_empties_the_holder_with_a_precondition_and_retries_a_conflict() {
    let (client, mut server) = ApiServer::start();
    let releasing = tokio::spawn(async move { elector(client, Timing::default()).release().await });
    server.answer(200, stored("me", "3", 1)).await;
    let first = server.answer(409, status(409, "Conflict")).await;
    assert_eq!(first.body["metadata"]["resourceVersion"], "3");
    server.answer(200, stored("me", "4", 1)).await;
    let second = server.answer(200, stored("", "5", 1)).await;
    assert_eq!(
        (second.method.as_str(), second.path.as_str()),
        ("PUT", PATH)
    );
    assert_eq!(second.body["metadata"]["resourceVersion"], "4");
    assert_eq!(second.body["spec"]["holderIdentity"], "");
    assert_eq!(second.body["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(second.body["spec"]["leaseTransitions"], 1);
    assert!(releasing.await.unwrap().unwrap(), "released");
}

#[tokio::test]
async fn release_leaves_another_replicas_lease_alone() {
    let (client, mut server) = ApiServer::start();
    let releasing = tokio::spawn(async move { elector(client, Timing::default()).release().await });
    server.answer(200, stored("other", "3", 1)).await;
    assert!(!releasing.await.unwrap().unwrap(), "nothing to release");
}

fn quick() -> Timing {
    Timing {
        lease_duration: Duration::from_millis(1500),
        renew_period: Duration::from_millis(50),
        renew_deadline: Duration::from_millis(400),
        retry_period: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn a_leader_that_finds_another_holder_stops_at_once() {
    let (client, mut server) = ApiServer::start();
    let holding = tokio::spawn(async move { elector(client, quick()).hold(Instant::now()).await });
    server.answer(200, stored("other", "9", 4)).await;
    assert_eq!(holding.await.unwrap(), Lost::TakenBy("other".into()));
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_at_its_deadline_even_while_a_request_hangs() {
    let (client, mut server) = ApiServer::start();
    let renewed_at = Instant::now();
    let holding = tokio::spawn(async move { elector(client, quick()).hold(renewed_at).await });
    // The first renewal fails, the retry never gets an answer.
    server.answer(500, status(500, "InternalError")).await;
    let _hanging = tokio::time::timeout(Duration::from_secs(5), server.handle.next_request())
        .await
        .expect("a retry");
    let lost = tokio::time::timeout(Duration::from_secs(5), holding)
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(lost, Lost::Deadline(quick().renew_deadline));
    let took = renewed_at.elapsed();
    assert!(
        took >= quick().renew_deadline && took < Duration::from_secs(2),
        "stopped after {took:?}"
    );
}
