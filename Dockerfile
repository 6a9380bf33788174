# The operator's image: one static binary on `scratch`, run as a non-root user.
#
#   docker build -t apprelease-operator .                    # builds the binary in `build`
#   buildah build --build-arg BINARY=prebuilt -t apprelease-operator .
#                  # copies target/image/, which scripts/image.sh fills on the host
#
# Both ways end in the same `runtime` stage; BINARY only chooses which stage its two files
# (the binary, a CA bundle) come from, and BuildKit (Docker's builder since 23.0) and buildah
# build only the stages the target needs, so the prebuilt way pulls no image at all (`scratch`
# is not downloaded).

ARG BINARY=build

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# glibc linked statically (the Rust image has no musl target). With --target, build scripts
# and proc macros stay dynamic and only the operator is static. Host names still resolve in
# `scratch` (/etc/hosts, DNS), without glibc's NSS libraries: tests/tests/image.rs.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked -p apprelease-operator --target "$(uname -m)-unknown-linux-gnu" \
 && mkdir -p target/image \
 && cp "target/$(uname -m)-unknown-linux-gnu/release/apprelease-operator" \
       /etc/ssl/certs/ca-certificates.crt target/image/

FROM scratch AS prebuilt
COPY target/image/ /src/target/image/

FROM ${BINARY} AS binary

FROM scratch AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="apprelease-operator" \
      org.opencontainers.image.description="A Kubernetes operator that upgrades self-hosted applications safely: backup, migrate, roll out, verify, roll back" \
      org.opencontainers.image.source="https://github.com/apprelease/apprelease-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=binary /src/target/image/apprelease-operator /apprelease-operator
# Debian's CA bundle, for webhooks over https and a kubeconfig that names no CA. In a cluster
# kube-rs checks the API server against the service account's ca.crt alone.
COPY --from=binary /src/target/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/apprelease-operator"]
CMD ["run"]
