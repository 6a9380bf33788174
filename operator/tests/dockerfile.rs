//! The Dockerfile, read without a container runtime: the image is the operator's binary on
//! `scratch` under a non-root numeric user, labelled from Cargo.toml, and the prebuilt way
//! (`--build-arg BINARY=prebuilt`, scripts/image.sh) needs no base image at all. Building and
//! running it is tests/tests/image.rs.

use std::collections::BTreeMap;

fn repo(path: &str) -> String {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Stage {
    from: String,
    name: String,
    /// Instructions after FROM: keyword (upper case) and the rest of the line.
    lines: Vec<(String, String)>,
}

struct Dockerfile {
    /// ARGs before the first FROM, with their defaults.
    args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn read() -> Self {
        let text = repo("Dockerfile").replace("\\\n", " ");
        let mut args = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once(' ').expect("an instruction with arguments");
            let (keyword, rest) = (keyword.to_uppercase(), rest.trim().to_string());
            match (keyword.as_str(), stages.last_mut()) {
                ("FROM", _) => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let (from, name) = match words[..] {
                        [from, as_, name] if as_.eq_ignore_ascii_case("as") => (from, name),
                        _ => panic!("every stage is named: FROM {rest}"),
                    };
                    stages.push(Stage {
                        from: from.into(),
                        name: name.into(),
                        lines: vec![],
                    });
                }
                ("ARG", None) => {
                    let (name, default) = rest.split_once('=').expect("a header ARG has a default");
                    args.insert(name.into(), default.into());
                }
                (_, Some(stage)) => stage.lines.push((keyword, rest)),
                (_, None) => panic!("{keyword} before the first FROM"),
            }
        }
        Self { args, stages }
    }

    fn stage(&self, name: &str) -> &Stage {
        self.stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    }

    /// The base images the last stage needs when the header ARGs are `args`: what a build
    /// pulls (stages only built when needed, as BuildKit and buildah do).
    fn pulled(&self, args: &BTreeMap<String, String>) -> Vec<String> {
        let mut pulled = vec![];
        let mut todo = vec![self.stages.last().unwrap().name.clone()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let stage = self.stage(&name);
            let mut from = stage.from.clone();
            for (arg, value) in args {
                from = from.replace(&format!("${{{arg}}}"), value);
            }
            let copied = stage.lines.iter().filter_map(|(keyword, rest)| {
                let rest = rest.strip_prefix("--from=")?;
                (keyword == "COPY").then(|| rest.split_whitespace().next().unwrap().to_string())
            });
            let mut needs: Vec<String> = copied.collect();
            if self.stages.iter().any(|s| s.name == from) {
                needs.push(from);
            } else if from != "scratch" {
                pulled.push(from);
            }
            todo.extend(needs);
        }
        pulled
    }
}

fn instruction<'a>(stage: &'a Stage, keyword: &str) -> Vec<&'a str> {
    let lines = stage.lines.iter().filter(|(k, _)| k == keyword);
    lines.map(|(_, rest)| rest.as_str()).collect()
}

/// `key="value" key2="value 2"` of a LABEL instruction.
fn labels(rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = after.split_once('"').expect("a closing quote");
        labels.insert(key.trim().to_string(), value.to_string());
        rest = after.trim();
    }
    assert!(rest.is_empty(), "only quoted values: {rest}");
    labels
}

#[test]
fn the_image_is_the_static_binary_on_scratch_as_a_non_root_user() {
    let dockerfile = Dockerfile::read();
    let runtime = dockerfile.stages.last().unwrap();
    assert_eq!(runtime.from, "scratch");

    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_apprelease-operator"));
    let path = format!("/{}", bin.file_name().unwrap().to_str().unwrap());
    assert_eq!(
        instruction(runtime, "ENTRYPOINT"),
        [format!(r#"["{path}"]"#)]
    );
    let copies = instruction(runtime, "COPY");
    assert!(
        copies.iter().any(|c| c.ends_with(&format!(" {path}"))),
        "{copies:?}"
    );

    // Numeric, so that the kubelet can check the Deployment's runAsNonRoot.
    let user = instruction(runtime, "USER");
    let [user] = user[..] else {
        panic!("one USER: {user:?}")
    };
    let (uid, gid) = user.split_once(':').expect("uid:gid");
    let (uid, gid): (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    assert!(uid != 0 && gid != 0, "{user}");
    let deployment = repo("manifests/deployment.yaml");
    assert!(deployment.contains("runAsNonRoot: true"));
    // The default command is what the Deployment runs, with its flags.
    assert_eq!(instruction(runtime, "CMD"), [r#"["run"]"#]);
    assert!(deployment.contains(r#"args: ["run", "#));
}

#[test]
fn the_labels_come_from_cargo_toml() {
    let dockerfile = Dockerfile::read();
    let runtime = dockerfile.stages.last().unwrap();
    let found: BTreeMap<String, String> = instruction(runtime, "LABEL")
        .into_iter()
        .flat_map(labels)
        .collect();
    let oci = |key: &str| found[&format!("org.opencontainers.image.{key}")].as_str();
    assert_eq!(oci("title"), env!("CARGO_PKG_NAME"));
    assert_eq!(oci("description"), env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(oci("source"), env!("CARGO_PKG_REPOSITORY"));
    assert_eq!(oci("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(oci("version"), "${VERSION}");
    let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
    assert_eq!(instruction(runtime, "ARG"), [version.as_str()]);
    // The shipped Deployment runs the image of this version.
    let image = format!(
        "image: ghcr.io/apprelease/apprelease-operator:{}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        repo("manifests/deployment.yaml").contains(&image),
        "{image}"
    );
}

#[test]
fn the_prebuilt_way_pulls_nothing_and_the_source_way_a_recent_enough_rust() {
    let dockerfile = Dockerfile::read();
    let mut args = dockerfile.args.clone();
    args.insert("BINARY".into(), "prebuilt".into());
    assert_eq!(dockerfile.pulled(&args), Vec::<String>::new());

    let pulled = dockerfile.pulled(&dockerfile.args);
    let [rust] = &pulled[..] else {
        panic!("one base image to build from source: {pulled:?}")
    };
    let version = rust
        .strip_prefix("docker.io/library/rust:")
        .and_then(|tag| tag.split('-').next())
        .expect("the official Rust image");
    let numbers = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        numbers(version)[..2] >= numbers(env!("CARGO_PKG_RUST_VERSION"))[..2],
        "{rust} is older than rust-version"
    );

    // Both ways build the binary alike.
    let build = instruction(dockerfile.stage("build"), "RUN").join("\n");
    let script = repo("scripts/image.sh");
    for part in [
        "RUSTFLAGS='-C target-feature=+crt-static'",
        "cargo build --release --locked -p apprelease-operator --target",
        "-unknown-linux-gnu",
    ] {
        assert!(build.contains(part) && script.contains(part), "{part}");
    }
    let ignore = repo(".dockerignore");
    let ignored: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        ignored.contains(&"target") && ignored.contains(&"!target/image"),
        "{ignored:?}"
    );
}
