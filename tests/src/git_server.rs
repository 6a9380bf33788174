//! A git repository served over HTTP on loopback, for GitOps controllers to fetch from: the
//! Smart HTTP protocol of Debian's `git http-backend` (a CGI program that ships with git),
//! bridged by a small axum server. Read-only (clone and fetch; `receive-pack` is refused):
//! the scenario commits in the working tree directly, as a developer's push would land.
//!
//! Flux's source-controller accepts only `http`, `https` and `ssh` URLs (not `git://`, not
//! `file://`), hence HTTP rather than `git daemon`.
//!
//! The server runs on a runtime of its own thread, so a test that blocks its own thread for a
//! moment (reading a large audit log) never stalls a fetch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::io::AsyncWriteExt;

/// A working tree whose repository is served at [`GitServer::url`], until dropped.
pub struct GitServer {
    /// The working tree (its `.git` is what is served).
    pub dir: PathBuf,
    addr: SocketAddr,
    name: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Served {
    root: PathBuf,
}

impl GitServer {
    /// Makes an empty repository `NAME` (branch `main`) under `root` and serves it.
    pub fn start(root: &Path, name: &str) -> anyhow::Result<Self> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        git(&dir, &["init", "--quiet", "--initial-branch=main"])?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::new(Served {
            root: root.to_path_buf(),
        });
        std::thread::Builder::new()
            .name("git-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the git server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("the listener of the git server");
                    let app = axum::Router::new().fallback(cgi).with_state(served);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            dir,
            addr,
            name: name.to_string(),
            stop: Some(stop),
        })
    }

    /// The clone URL.
    pub fn url(&self) -> String {
        format!("http://{}/{}", self.addr, self.name)
    }

    /// Writes `files` (path relative to the working tree, content), commits everything as
    /// `message` and returns the commit's hash.
    pub fn commit(&self, files: &[(&str, String)], message: &str) -> anyhow::Result<String> {
        for (path, content) in files {
            let path = self.dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
        }
        git(&self.dir, &["add", "--all"])?;
        git(
            &self.dir,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        )?;
        Ok(git(&self.dir, &["rev-parse", "HEAD"])?.trim().to_string())
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs git in `dir` with a fixed identity (no user configuration needed) and returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("git")
        .args(["-c", "user.name=e2e", "-c", "user.email=e2e@apprelease.io"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    anyhow::ensure!(
        output.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One request through `git http-backend` (RFC 3875 CGI: the request in environment
/// variables and stdin, the answer as CGI headers and a body on stdout).
async fn cgi(
    State(served): State<Arc<Served>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match run_cgi(&served.root, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(format!("{e:#}")))
            .expect("a plain response"),
    }
}

async fn run_cgi(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<Response> {
    if uri.path().ends_with("/git-receive-pack") || uri.query() == Some("service=git-receive-pack")
    {
        return Ok(Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::from("read-only"))?);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        // The client may gzip its request (git does, go-git does not); http-backend inflates it.
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting git http-backend")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    // Written while the output is read: a large request must not deadlock on full pipes.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await?;
    let _ = writer.await;
    anyhow::ensure!(
        output.status.success(),
        "git http-backend failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    cgi_response(&output.stdout)
}

/// The HTTP response of a CGI program's output: headers up to the first blank line (a
/// `Status:` header sets the code), then the body.
fn cgi_response(out: &[u8]) -> anyhow::Result<Response> {
    let (head, body) = split_head(out).context("a CGI answer without headers")?;
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            response = response.status(code.parse::<u16>()?);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    Ok(response.body(Body::from(body.to_vec()))?)
}

fn split_head(out: &[u8]) -> Option<(&[u8], &[u8])> {
    for (i, window) in out.windows(2).enumerate() {
        if window == b"\n\n" {
            return Some((&out[..i], &out[i + 2..]));
        }
        if out[i..].starts_with(b"\r\n\r\n") {
            return Some((&out[..i], &out[i + 4..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_headers_become_the_status_and_headers() {
        let response =
            cgi_response(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "text/plain");
        let response = cgi_response(b"Content-Type: application/x-git\n\nPACK").unwrap();
        assert_eq!(response.status(), 200);
    }

    /// A real `git clone` over the bridge gets what was committed.
    #[test]
    fn git_clones_what_was_committed() {
        let root = std::env::temp_dir().join(format!("apprelease-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let server = GitServer::start(&root, "app").unwrap();
        let commit = server
            .commit(&[("a/b.yaml", "x: 1\n".into())], "first")
            .unwrap();
        let clone = root.join("clone");
        git(&root, &["clone", "--quiet", &server.url(), "clone"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(clone.join("a/b.yaml")).unwrap(),
            "x: 1\n"
        );
        assert_eq!(git(&clone, &["rev-parse", "HEAD"]).unwrap().trim(), commit);
        // A second commit arrives with a fetch (protocol v2, as go-git and git speak it).
        let second = server
            .commit(&[("a/b.yaml", "x: 2\n".into())], "second")
            .unwrap();
        git(&clone, &["pull", "--quiet"]).unwrap();
        assert_eq!(git(&clone, &["rev-parse", "HEAD"]).unwrap().trim(), second);
        // Pushing is refused.
        std::fs::write(clone.join("c"), "c").unwrap();
        git(&clone, &["add", "c"]).unwrap();
        git(&clone, &["commit", "--quiet", "-m", "c"]).unwrap();
        assert!(git(&clone, &["push", "--quiet", "origin", "main"]).is_err());
        drop(server);
        let _ = std::fs::remove_dir_all(&root);
    }
}
