//! The connection, as kubectl makes it: `--kubeconfig`, else `KUBECONFIG` (files merged),
//! else `~/.kube/config`, else the in-cluster service account; `--context`, else the current
//! one; `-n`, else the context's namespace, else `default`. And API errors said in a way
//! that tells what to do.

use std::path::Path;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client and where it points.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
}

/// Connects as kubectl would.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    namespace: Option<&str>,
) -> anyhow::Result<Cluster> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    // The kube errors already carry their causes in their text: one line, cause, then what to do.
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the kubeconfig {}: {e}; point --kubeconfig at a kubeconfig file",
                    path.display()
                )
            })?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| kubeconfig_error(&e, context))?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            // Inside a pod without a kubeconfig, kubectl uses the pod's service account.
            Err(e) if context.is_none() => {
                Config::incluster().map_err(|_| kubeconfig_error(&e, None))?
            }
            Err(e) => return Err(kubeconfig_error(&e, context)),
        },
    };
    let server = config.cluster_url.to_string();
    let namespace = namespace
        .map(String::from)
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("cannot build a client for the kubeconfig")?;
    Ok(Cluster {
        client,
        namespace,
        server,
    })
}

fn kubeconfig_error(e: &kube::config::KubeconfigError, context: Option<&str>) -> anyhow::Error {
    let which = match context {
        Some(c) => format!("the context {c:?} of the kubeconfig"),
        None => "the kubeconfig (--kubeconfig, else KUBECONFIG, else ~/.kube/config)".into(),
    };
    anyhow::anyhow!(
        "cannot use {which}: {e}; point --kubeconfig at a valid file, or pick one of its \
         contexts with --context (`kubectl config get-contexts` lists them)"
    )
}

/// An object an API call was about, for its error message.
pub struct About<'a> {
    /// `appreleases.apprelease.io`, `deployments.apps`, …
    pub resource: &'a str,
    /// Its name, for calls on one object.
    pub name: Option<&'a str>,
}

impl Cluster {
    /// The error of an API call about `about`, said so that it tells what to do.
    pub fn error(&self, e: kube::Error, about: About<'_>) -> anyhow::Error {
        anyhow::anyhow!(explain(&e, &about, &self.namespace, &self.server))
    }
}

/// What to tell about a failed API call.
pub fn explain(e: &kube::Error, about: &About<'_>, namespace: &str, server: &str) -> String {
    let resource = about.resource;
    let kube::Error::Api(status) = e else {
        return format!(
            "cannot reach the cluster at {server}: {e}; check that it runs and that the \
             kubeconfig (--kubeconfig, --context) points at it"
        );
    };
    match (status.code, about.name) {
        // A missing object names itself in the message; a 404 that does not is a resource
        // the server does not serve.
        (404, Some(name)) if status.message.contains(&format!("\"{name}\" not found")) => {
            format!(
                "{resource} \"{name}\" not found in namespace {namespace} (another namespace: -n NAMESPACE)"
            )
        }
        (404, _) => format!(
            "the cluster at {server} does not serve {resource} ({}): install the AppRelease \
             CRDs first (kubectl apply -k manifests/ from the operator's repository)",
            status.message
        ),
        (401, _) => format!(
            "the cluster at {server} refused the kubeconfig's credentials (401 Unauthorized): \
             log in again, or pick another --context"
        ),
        (403, _) => format!(
            "{}: ask a cluster administrator for this permission, or pick another --context",
            status.message
        ),
        (code, _) => format!("{} ({code} {})", status.message, status.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn api_errors_say_what_to_do() {
        let release = About {
            resource: "appreleases.apprelease.io",
            name: Some("shop"),
        };
        let list = About {
            resource: "appreleaserestores.apprelease.io",
            name: None,
        };
        let say = |e: kube::Error, about: &About| explain(&e, about, "prod", "https://k:6443/");
        assert_eq!(
            say(
                api(
                    404,
                    "NotFound",
                    "appreleases.apprelease.io \"shop\" not found"
                ),
                &release
            ),
            "appreleases.apprelease.io \"shop\" not found in namespace prod (another namespace: -n NAMESPACE)"
        );
        assert_eq!(
            say(
                api(
                    404,
                    "NotFound",
                    "the server could not find the requested resource"
                ),
                &list
            ),
            "the cluster at https://k:6443/ does not serve appreleaserestores.apprelease.io (the \
             server could not find the requested resource): install the AppRelease CRDs first \
             (kubectl apply -k manifests/ from the operator's repository)"
        );
        assert!(say(api(401, "Unauthorized", "Unauthorized"), &release).contains("log in again"));
        assert_eq!(
            say(
                api(
                    403,
                    "Forbidden",
                    "appreleases.apprelease.io \"shop\" is forbidden: User \"u\" cannot get"
                ),
                &release
            ),
            "appreleases.apprelease.io \"shop\" is forbidden: User \"u\" cannot get: ask a cluster \
             administrator for this permission, or pick another --context"
        );
        assert_eq!(
            say(api(422, "Invalid", "spec.release: Invalid value"), &release),
            "spec.release: Invalid value (422 Invalid)"
        );
        let refused = kube::Error::LinesCodecMaxLineLengthExceeded;
        assert!(
            say(refused, &release).starts_with("cannot reach the cluster at https://k:6443/: ")
        );
    }
}
