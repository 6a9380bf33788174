//! The simulator through a real kubectl (required: these tests fail when it is missing).

mod common;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use apprelease_sim::{JobMatch, JobRule, SimHandle};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// kubectl pointed at one simulator, with its own HOME so discovery caches never leak
/// between tests.
struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    fn new(sim: &SimHandle, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "apprelease-sim-{name}-{}-{}",
            std::process::id(),
            sim.addr().port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        sim.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
        Self { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir)
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl must be on PATH (CI installs Debian's kubernetes-client)");
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .await
            .unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} hung"))
            .unwrap()
    }

    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin).await;
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
";

fn deployment_yaml(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: {image}
      - name: sidecar
        image: side:1
"
    )
}

async fn with_widgets(kubectl: &Kubectl) {
    let out = kubectl
        .ok(&["apply", "-f", "-"], Some(&common::widget_crd_yaml()))
        .await;
    assert!(out.contains("widgets.example.com created"), "{out}");
    kubectl
        .ok(
            &[
                "wait",
                "--for=condition=Established",
                "crd/widgets.example.com",
                "--timeout=20s",
            ],
            None,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_describes_waits_patches_and_deletes() {
    let (sim, client) = common::start(20.0).await;
    let kubectl = Kubectl::new(&sim, "main");
    with_widgets(&kubectl).await;
    // The CRD again, server-side: the same content co-owns the fields without conflict.
    let out = kubectl
        .ok(
            &["apply", "--server-side", "-f", "-"],
            Some(&common::widget_crd_yaml()),
        )
        .await;
    assert!(out.contains("serverside-applied"), "{out}");

    let explained = kubectl.ok(&["explain", "widgets.spec"], None).await;
    assert!(
        explained.contains("size") && explained.contains("<integer>"),
        "{explained}"
    );

    // Client-side apply of a custom resource, then printer columns.
    kubectl.ok(&["apply", "-f", "-"], Some(WIDGET)).await;
    let table = kubectl.ok(&["get", "widgets"], None).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "READY", "AGE"], "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("w1 "), "{table}");
    let wide = kubectl.ok(&["get", "wd", "-o", "wide"], None).await;
    assert!(wide.lines().next().unwrap().contains("MESSAGE"), "{wide}");
    assert!(kubectl.ok(&["get", "examples"], None).await.contains("w1"));

    // Server-side apply of the same object with a change.
    let bigger = WIDGET.replace("size: 3", "size: 4");
    // As on a real cluster, the client-side applier owns the field: without forcing,
    // server-side apply reports the conflict.
    let err = kubectl
        .fails(&["apply", "--server-side", "-f", "-"], Some(&bigger))
        .await;
    assert!(
        err.contains("conflict with \"kubectl-client-side-apply\""),
        "{err}"
    );
    assert!(err.contains(".spec.size"), "{err}");
    let out = kubectl
        .ok(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&bigger),
        )
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let size = kubectl
        .ok(
            &["get", "widget", "w1", "-o", "jsonpath={.spec.size}"],
            None,
        )
        .await;
    assert_eq!(size, "4");

    // Status through the subresource, then wait for the condition.
    kubectl
        .ok(
            &["patch", "widget", "w1", "--subresource=status", "--type=merge", "-p",
              r#"{"status":{"conditions":[{"type":"Ready","status":"True","message":"all good"}]}}"#],
            None,
        )
        .await;
    kubectl
        .ok(
            &[
                "wait",
                "--for=condition=Ready",
                "widget/w1",
                "--timeout=20s",
            ],
            None,
        )
        .await;
    let wide = kubectl.ok(&["get", "widgets", "-o", "wide"], None).await;
    assert!(wide.contains("True") && wide.contains("all good"), "{wide}");
    // An event published the way the operator does (events.k8s.io) shows in describe.
    let uid = kubectl
        .ok(
            &["get", "widget", "w1", "-o", "jsonpath={.metadata.uid}"],
            None,
        )
        .await;
    let recorder = Recorder::new(client.clone(), "widget-controller".into());
    let reference = ObjectReference {
        api_version: Some("example.com/v1".into()),
        kind: Some("Widget".into()),
        name: Some("w1".into()),
        namespace: Some("default".into()),
        uid: Some(uid),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "Resized".into(),
        note: Some("grew to 4".into()),
        action: "Resize".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    let described = kubectl.ok(&["describe", "widget", "w1"], None).await;
    assert!(
        described.contains("Resized") && described.contains("grew to 4"),
        "{described}"
    );
    assert!(
        described.contains("Size:") && described.contains("all good"),
        "{described}"
    );

    // A Deployment: client-side apply, rollout, then a server-side apply of a new image.
    kubectl
        .ok(&["apply", "-f", "-"], Some(&deployment_yaml("app:1")))
        .await;
    kubectl
        .ok(
            &[
                "wait",
                "--for=condition=Available",
                "deployment/web",
                "--timeout=30s",
            ],
            None,
        )
        .await;
    kubectl
        .ok(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=release",
                "-f",
                "-",
            ],
            Some(&deployment_yaml("app:2")),
        )
        .await;
    kubectl
        .ok(
            &["rollout", "status", "deployment/web", "--timeout=30s"],
            None,
        )
        .await;
    let images = kubectl
        .ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image}",
            ],
            None,
        )
        .await;
    assert_eq!(images, "app:2 side:1");
    // Strategic merge patch keyed by container name leaves the sidecar alone.
    kubectl
        .ok(
            &[
                "patch",
                "deployment",
                "web",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:3"}]}}}}"#,
            ],
            None,
        )
        .await;
    let images = kubectl
        .ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image}",
            ],
            None,
        )
        .await;
    assert_eq!(images, "app:3 side:1");
    // The rollout history lives in ReplicaSets: undo goes back to app:2.
    kubectl
        .ok(
            &["rollout", "status", "deployment/web", "--timeout=30s"],
            None,
        )
        .await;
    kubectl
        .ok(&["rollout", "undo", "deployment/web"], None)
        .await;
    kubectl
        .ok(
            &["rollout", "status", "deployment/web", "--timeout=30s"],
            None,
        )
        .await;
    let images = kubectl
        .ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image}",
            ],
            None,
        )
        .await;
    assert_eq!(images, "app:2 side:1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pods = kubectl
            .ok(&["get", "pods", "-l", "app=web", "-o", "name"], None)
            .await;
        if pods.lines().count() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two pods remain: {pods}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kubectl
        .ok(
            &[
                "patch",
                "deployment",
                "web",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:3"}]}}}}"#,
            ],
            None,
        )
        .await;
    let described = kubectl.ok(&["describe", "deployment", "web"], None).await;
    assert!(
        described.contains("Progressing") && described.contains("app:3"),
        "{described}"
    );

    // Errors come back as a real server's would.
    let bad_selector =
        deployment_yaml("app:1").replace("matchLabels: {app: web}", "matchLabels: {app: other}");
    let err = kubectl
        .fails(
            &["apply", "-f", "-"],
            Some(&bad_selector.replace("name: web", "name: bad")),
        )
        .await;
    assert!(err.contains("is invalid"), "{err}");
    let unknown = WIDGET.replace("size: 3", "size: 3\n  colour: red");
    let err = kubectl.fails(&["apply", "-f", "-"], Some(&unknown)).await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.colour\""),
        "{err}"
    );
    let err = kubectl.fails(&["get", "widget", "nope"], None).await;
    assert!(
        err.contains("NotFound") && err.contains("\"nope\" not found"),
        "{err}"
    );

    // Job pods have "logs": a note and the termination message.
    sim.script_job(JobRule::succeed(
        JobMatch::name("report"),
        Duration::from_secs(1),
        Some("{\"sizeBytes\":42}"),
    ));
    let job = "apiVersion: batch/v1
kind: Job
metadata:
  name: report
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
";
    kubectl.ok(&["apply", "-f", "-"], Some(job)).await;
    kubectl
        .ok(
            &[
                "wait",
                "--for=condition=Complete",
                "job/report",
                "--timeout=30s",
            ],
            None,
        )
        .await;
    let logs = kubectl.ok(&["logs", "job/report"], None).await;
    assert!(logs.contains("{\"sizeBytes\":42}"), "{logs}");

    kubectl.ok(&["delete", "widget", "w1"], None).await;
    let err = kubectl.fails(&["get", "widget", "w1"], None).await;
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_sees_a_change() {
    let (sim, _client) = common::start(1.0).await;
    let kubectl = Kubectl::new(&sim, "watch");
    with_widgets(&kubectl).await;
    kubectl.ok(&["apply", "-f", "-"], Some(WIDGET)).await;

    let mut watch = kubectl
        .command(&["get", "widgets", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl must be on PATH");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("kubectl prints the header")
        .unwrap()
        .unwrap();
    assert!(first.starts_with("EVENT"), "{first}");
    let added = lines.next_line().await.unwrap().unwrap();
    assert!(
        added.starts_with("ADDED") && added.contains("w1"),
        "{added}"
    );

    kubectl
        .ok(
            &[
                "patch",
                "widget",
                "w1",
                "--type=merge",
                "-p",
                r#"{"spec":{"size":7}}"#,
            ],
            None,
        )
        .await;
    let modified = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("kubectl prints the change")
        .unwrap()
        .unwrap();
    let cells: Vec<&str> = modified.split_whitespace().collect();
    assert_eq!(&cells[..3], ["MODIFIED", "w1", "7"], "{modified}");
    watch.kill().await.unwrap();
}
