#!/usr/bin/env bash
# Runs every test of the workspace, then the end-to-end scenarios again on the real
# Kubernetes control plane. Installs the system tools the tests drive for real (database
# servers, openssl, buildah, podman) when they are missing and this runs as root with apt,
# builds the operator's container image (scripts/image.sh, a static release build), and
# builds the control plane (kube-apiserver, controller-manager, scheduler, kubectl, etcd),
# KWOK, helm and Flux's and Argo CD's controllers from the official Go modules the first time
# (testbed/README.md: about 20 minutes on 2 cores for the control plane and helm, and Flux
# and Argo CD in the background during the simulator run; cached in
# ~/.cache/apprelease-testbed afterwards).
#
#   APPRELEASE_SKIP_CONTROL_PLANE=1   only the simulator run (no Go build either; the chart's
#                                     and the GitOps tests then fail, saying how to get helm,
#                                     Flux and Argo CD, unless APPRELEASE_HELM_BIN,
#                                     APPRELEASE_FLUX_BIN and APPRELEASE_ARGOCD_BIN are set)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The testbed's certificates are made with the openssl command line; minimal Debian images
# have the library only.
command -v openssl >/dev/null || need+=(openssl)
# Real database servers for the backup presets' round-trip tests (operator/tests/presets_*.rs),
# and BusyBox to run the preset scripts as the Alpine-based images do.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v redis-server >/dev/null || need+=(redis-server)
command -v busybox >/dev/null || need+=(busybox)
# Lua, to run the Argo CD health check we ship (operator/tests/argocd_health.rs).
command -v lua5.4 >/dev/null || need+=(lua5.4)
# The container image, built by scripts/image.sh and run by tests/tests/image.rs (runc:
# see PODMAN_RUN in tests/src/operator.rs).
for tool in buildah podman runc file; do
  command -v $tool >/dev/null || need+=($tool)
done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]} — install them (Debian/Ubuntu: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

control_plane=${APPRELEASE_SKIP_CONTROL_PLANE:-}
if [ -z "$control_plane" ]; then
  command -v go >/dev/null || {
    echo "go (1.26 or newer) is needed to build the testbed control plane (or set APPRELEASE_SKIP_CONTROL_PLANE=1)" >&2
    exit 1
  }
  # Flux's source-controller and kustomize-controller (tests/tests/gitops_flux*.rs) and Argo
  # CD's application controller and repo server (tests/tests/gitops_argocd.rs, with Debian's
  # redis-server as their cache) serve the control-plane run only: on a cold cache they
  # build in the background (under nice, as every testbed build) while the image and the
  # simulator run go, which is most of half an hour saved on two cores: their module
  # downloads and the tests' idle time overlap the other work.
  gitops_out=$(mktemp -d)
  (
    bash testbed/build.sh --flux 2>>"$gitops_out/log" | tail -n 1 >"$gitops_out/flux" &&
      bash testbed/build.sh --argocd 2>>"$gitops_out/log" | tail -n 1 >"$gitops_out/argocd"
  ) &
  gitops_build=$!
  t0=$(date +%s)
  # Each prints its bin directory last; a cached build takes a fraction of a second.
  bin=$(bash testbed/build.sh | tail -n 1)
  kwok=$(bash testbed/build.sh --kwok | tail -n 1)
  # helm for the chart's tests (operator/tests/chart.rs, tests/tests/chart.rs).
  helm=$(bash testbed/build.sh --helm | tail -n 1)
  export APPRELEASE_TESTBED_BIN=$bin APPRELEASE_KWOK_BIN=$kwok/kwok APPRELEASE_HELM_BIN=$helm/helm
  echo "testbed binaries ready in $(( $(date +%s) - t0 )) s: $bin"
  # The kubectl built with the control plane serves the kubectl tests when the machine has
  # none (Debian's kubernetes-client is too old for them, see below).
  command -v kubectl >/dev/null || export PATH="$bin:$PATH"
fi

# The simulator and the kustomize base need a kubectl of 1.27 or newer; Debian 12's
# kubernetes-client is 1.20 (it insists on the OpenAPI v2 protobuf document). Say so plainly
# instead of failing in the middle of the kubectl tests.
command -v kubectl >/dev/null || {
  echo "kubectl is missing: install kubectl 1.27 or newer (or let this script build one)" >&2
  exit 1
}
minor=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n 1)
if [ -n "$minor" ] && [ "$minor" -lt 27 ]; then
  echo "kubectl 1.$minor is too old for these tests: install kubectl 1.27 or newer" >&2
  exit 1
fi

# The static release build has a target directory of its own outside the repository, so
# that a machine that keeps ~/.cache rebuilds only the workspace's crates (the dependencies
# are most of the 13 CPU-minutes of a cold build); cargo itself tells what is stale.
CARGO_TARGET_DIR=${APPRELEASE_IMAGE_TARGET_DIR:-$HOME/.cache/apprelease-image/target} \
  bash scripts/image.sh localhost/apprelease-operator:test
export APPRELEASE_IMAGE=localhost/apprelease-operator:test

# The GitOps scenarios need the real server whatever the backend (their doc comments say why)
# and take minutes: when the control-plane run below happens, they run there only.
gitops=()
if [ -z "$control_plane" ]; then
  # After the caller's own `--` if it gave one.
  case " $* " in *" -- "*) ;; *) gitops=(--) ;; esac
  gitops+=(--skip flux_syncs_an_apprelease_from_git --skip without_ignore_rules_flux_reverts
    --skip argo_cd_syncs_an_apprelease_from_git)
fi

t0=$(date +%s)
cargo test --workspace --locked "$@" "${gitops[@]}"
echo "simulator run: $(( $(date +%s) - t0 )) s"

if [ -z "$control_plane" ]; then
  # The same scenarios on the real control plane: one kube-apiserver + etcd + controllers +
  # KWOK per test binary, the operator under the shipped RBAC. Excluded by name, because they
  # can only be staged on the simulator (each says why in its doc comment):
  #   s08_a_flaky_api_still_converges_without_duplicates  injects API faults
  t0=$(date +%s)
  wait "$gitops_build" || {
    cat "$gitops_out/log" >&2
    echo "building Flux or Argo CD failed (log above)" >&2
    exit 1
  }
  sed 's/^/  /' "$gitops_out/log"
  APPRELEASE_FLUX_BIN=$(cat "$gitops_out/flux") APPRELEASE_ARGOCD_BIN=$(cat "$gitops_out/argocd")
  export APPRELEASE_FLUX_BIN APPRELEASE_ARGOCD_BIN
  echo "Flux and Argo CD ready $(( $(date +%s) - t0 )) s after the simulator run"
  t0=$(date +%s)
  APPRELEASE_E2E_BACKEND=control-plane cargo test -p apprelease-e2e --locked -- \
    --skip s08_a_flaky_api_still_converges_without_duplicates
  echo "control-plane run: $(( $(date +%s) - t0 )) s"
fi
