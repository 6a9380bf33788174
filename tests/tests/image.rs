//! The container image built from the Dockerfile, named by `APPRELEASE_IMAGE`
//! (`bash scripts/image.sh` builds `localhost/apprelease-operator:dev`; scripts/test.sh builds
//! it and sets the variable): podman runs it, and the operator in it upgrades the example app
//! as the binary does in the other scenarios. Without the variable these fail saying so.

use std::process::Command;

use anyhow::Context as _;
use apprelease_e2e::fixtures::{self, Jobs, RELEASE, V1, V2};
use apprelease_e2e::operator::PODMAN_RUN;
use apprelease_e2e::{Cluster, Operator, Options, Scenario, scrape};
use apprelease_operator::api::UpgradeResult;

fn image() -> anyhow::Result<String> {
    std::env::var("APPRELEASE_IMAGE").context(
        "APPRELEASE_IMAGE names no image: build one with `bash scripts/image.sh` (buildah, podman \
         and runc needed) and set APPRELEASE_IMAGE=localhost/apprelease-operator:dev",
    )
}

fn podman(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("podman")
        .args(args)
        .output()
        .context("running podman")?;
    anyhow::ensure!(
        output.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn i01_the_image_runs_the_binary_of_its_version_label() -> anyhow::Result<()> {
    let image = image()?;
    let label = podman(&[
        "image",
        "inspect",
        "--format",
        r#"{{index .Labels "org.opencontainers.image.version"}}"#,
        &image,
    ])?;
    let printed = podman(&[PODMAN_RUN, &[&image, "--version"]].concat())?;
    assert_eq!(printed, format!("apprelease-operator {label}"));
    Ok(())
}

#[tokio::test]
async fn i02_the_operator_in_the_image_upgrades_the_example_app() -> anyhow::Result<()> {
    let image = image()?;
    let cluster = Cluster::start("image").await?;
    fixtures::deploy_app(&cluster).await?;
    // The simulator by name: resolving `localhost` shows that the static binary's name
    // lookups work in `scratch` (the real server's certificate may not name it).
    let kubeconfig = if cluster.is_simulated() {
        let text = std::fs::read_to_string(&cluster.operator_kubeconfig)?;
        let path = cluster.dir.join("localhost.kubeconfig");
        std::fs::write(&path, text.replace("127.0.0.1", "localhost"))?;
        Some(path)
    } else {
        None
    };
    let operator = Operator::start_with(
        &cluster,
        Options {
            kubeconfig,
            image: Some(image),
            ..Options::default()
        },
    )?;
    let s = Scenario { cluster, operator };

    s.adopt(&Jobs::default()).await?;
    fixtures::set_version(&s.cluster, RELEASE, V2).await?;
    let status = s.wait_ready(RELEASE, V2).await?;
    let entry = &status.history[0];
    assert_eq!(
        (entry.from.as_str(), entry.to.as_str(), entry.result),
        (V1, V2, UpgradeResult::Succeeded)
    );
    assert_eq!(status.backups.len(), 1);

    // As the image's USER, not root.
    let container = s.operator.container().context("runs in a container")?;
    let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &container])?;
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))?;
    let uids = proc_status.lines().find(|l| l.starts_with("Uid:"));
    assert_eq!(
        uids.map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["Uid:", "65532", "65532", "65532", "65532"])
    );
    let (code, text) = s.operator.get("/metrics").await?;
    assert_eq!(code, 200);
    assert_eq!(
        scrape::value(
            &text,
            "apprelease_upgrades_total",
            &[("result", "succeeded"), ("reason", "Succeeded")]
        ),
        Some(1.0),
        "{text}"
    );
    Ok(())
}
