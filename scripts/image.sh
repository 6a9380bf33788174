#!/usr/bin/env bash
# Builds the operator's container image from the Dockerfile with buildah, with no registry:
# the static binary is built here, as the Dockerfile's build stage builds it, and copied in
# (BINARY=prebuilt, see the Dockerfile). Prints the image's size.
#
#   bash scripts/image.sh [--run] [IMAGE]     IMAGE defaults to localhost/apprelease-operator:dev
#
#   --run   then runs the image with podman: `--version`, and the end-to-end test
#           tests/tests/image.rs, which upgrades the example app with the operator in the
#           container against a simulated cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

run=
if [ "${1:-}" = --run ]; then
  run=1
  shift
fi
image=${1:-localhost/apprelease-operator:dev}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' operator/Cargo.toml | head -n 1)
triple="$(uname -m)-unknown-linux-gnu"
target_dir=${CARGO_TARGET_DIR:-target}

t0=$(date +%s)
# The same command as the Dockerfile's build stage. --target keeps build scripts and proc
# macros dynamic; only the operator is linked statically.
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked -p apprelease-operator --target "$triple"
binary="$target_dir/$triple/release/apprelease-operator"
echo "static binary built in $(( $(date +%s) - t0 )) s: $(du -h "$binary" | cut -f1) $binary"
# A dynamic binary would start nowhere in `scratch`: fail here instead.
if ! file "$binary" | grep -Eq 'static(-pie)? linked|statically linked'; then
  file "$binary" >&2
  exit 1
fi

mkdir -p target/image
cp "$binary" target/image/apprelease-operator
cp /etc/ssl/certs/ca-certificates.crt target/image/

t0=$(date +%s)
# --layers --force-rm: otherwise buildah 1.28 leaves a working container behind at each build
# (of the `binary` stage).
buildah build --quiet --layers --force-rm --build-arg BINARY=prebuilt --build-arg VERSION="$version" \
  -t "$image" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image built in $(( $(date +%s) - t0 )) s: $(( size / 1000000 )) MB ($size bytes)"

if [ -n "$run" ]; then
  # runc and these limits: see PODMAN_RUN in tests/src/operator.rs.
  podman run --rm --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "$image" --version
  APPRELEASE_IMAGE=$image cargo test -p apprelease-e2e --locked --test image
fi
