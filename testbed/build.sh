#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and etcd from the official Go modules pinned in testbed/go.mod,
# into a cache directory outside the repository keyed by version, and reuses it when present.
#
#   testbed/build.sh            # build or reuse; the last stdout line is the bin dir
#   testbed/build.sh --kwok     # the same for KWOK (testbed/kwok/go.mod)
#   testbed/build.sh --helm     # the same for helm (testbed/helm/go.mod)
#   testbed/build.sh --flux     # Flux's source-controller and kustomize-controller, and
#                               # their CRDs (testbed/flux/go.mod)
#   testbed/build.sh --argocd   # Argo CD's multi-call binary, its CRDs and the repo
#                               # server's git-verify-wrapper.sh (testbed/argocd/go.mod)
#
# APPRELEASE_TESTBED_CACHE (default ~/.cache/apprelease-testbed) is where builds go.
# Progress and timings go to stderr. Builds run under `nice -n 19`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${APPRELEASE_TESTBED_CACHE:-$HOME/.cache/apprelease-testbed}
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

say() { echo "testbed/build.sh: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

version_of() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

# Builds into a temporary dir next to the final one and renames it at the end, so that a
# half-done build (killed, failed) is never taken for a finished one.
finish() {
  local tmp=$1 dir=$2
  rm -rf "$dir"
  mv "$tmp" "$dir"
  say "cache size: $(du -sh "$dir" | cut -f1) in $dir"
  echo "$dir/bin"
}

# One binary from its own pinned module (testbed/<name>/go.mod) into <name>-<version>/bin.
#   build_tool NAME MODULE PACKAGE [LDFLAGS]
build_tool() {
  local name=$1 module=$2 package=$3 ldflags="-s -w ${4:-}"
  local mod=$here/$name
  local version
  version=$(version_of "$mod" "$module")
  local dir=$cache/$name-$version
  if [[ -x $dir/bin/$name ]]; then
    say "reusing $dir/bin ($name $version)"
    echo "$dir/bin"
    return
  fi
  local tmp
  tmp=$(mktemp -d "$cache/.build-$name-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  local t0
  t0=$(now)
  (cd "$mod" && go mod download)
  say "downloaded modules in $(since "$t0") s"
  t0=$(now)
  (cd "$mod" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/$name" "$package")
  say "built $name $version in $(since "$t0") s"
  trap - EXIT
  finish "$tmp" "$dir"
}

build_kwok() {
  build_tool kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok
}

# What helm's Makefile stamps into a release build; without it `helm version` says "v4.3".
build_helm() {
  local version
  version=$(version_of "$here/helm" helm.sh/helm/v4)
  build_tool helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
}

# Both controllers from one module, into flux-source-<v>-kustomize-<v>/bin, with their CRDs
# from the module zips in ../crds (applied at test time; nothing of Flux is in the repository).
build_flux() {
  local mod=$here/flux source kustomize
  source=$(version_of "$mod" github.com/fluxcd/source-controller)
  kustomize=$(version_of "$mod" github.com/fluxcd/kustomize-controller)
  local dir=$cache/flux-source-$source-kustomize-$kustomize
  if [[ -x $dir/bin/source-controller && -x $dir/bin/kustomize-controller ]]; then
    say "reusing $dir/bin (source-controller $source, kustomize-controller $kustomize)"
    echo "$dir/bin"
    return
  fi
  local tmp
  tmp=$(mktemp -d "$cache/.build-flux-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  local t0
  t0=$(now)
  (cd "$mod" && go mod download github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller)
  say "downloaded modules in $(since "$t0") s"
  t0=$(now)
  (cd "$mod" && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/" \
    github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller)
  say "built source-controller $source and kustomize-controller $kustomize in $(since "$t0") s"
  mkdir -p "$tmp/crds"
  local m
  for m in github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller; do
    cp "$(cd "$mod" && go list -m -f '{{.Dir}}' "$m")"/config/crd/bases/*.yaml "$tmp/crds/"
  done
  chmod u+w "$tmp"/crds/*.yaml
  trap - EXIT
  finish "$tmp" "$dir"
}

# The one `argocd` binary, linked under the names of the two components the GitOps scenario
# runs (it dispatches on its name), with the Application and AppProject CRDs in ../crds and
# the script the repo server runs for every revision (its image has it on PATH), all from
# the module zip. Argo CD 3.6 needs Go 1.27: the toolchain comes from the module proxy.
build_argocd() {
  local mod=$here/argocd version
  export GOTOOLCHAIN=${APPRELEASE_ARGOCD_TOOLCHAIN:-go1.27.4}
  version=$(version_of "$mod" github.com/argoproj/argo-cd/v3)
  local dir=$cache/argocd-$version
  if [[ -x $dir/bin/argocd && -x $dir/bin/git-verify-wrapper.sh ]]; then
    say "reusing $dir/bin (argocd $version)"
    echo "$dir/bin"
    return
  fi
  local tmp
  tmp=$(mktemp -d "$cache/.build-argocd-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  local t0 src
  t0=$(now)
  (cd "$mod" && go mod download github.com/argoproj/argo-cd/v3)
  say "downloaded modules in $(since "$t0") s"
  t0=$(now)
  (cd "$mod" && nice -n 19 go build -trimpath \
    -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${version#v} -X github.com/argoproj/argo-cd/v3/common.gitTreeState=clean" \
    -o "$tmp/bin/argocd" github.com/argoproj/argo-cd/v3/cmd)
  say "built argocd $version in $(since "$t0") s"
  ln -s argocd "$tmp/bin/argocd-application-controller"
  ln -s argocd "$tmp/bin/argocd-repo-server"
  src=$(cd "$mod" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
  install -m 755 "$src/hack/git-verify-wrapper.sh" "$tmp/bin/"
  mkdir -p "$tmp/crds"
  install -m 644 "$src/manifests/crds/application-crd.yaml" "$src/manifests/crds/appproject-crd.yaml" "$tmp/crds/"
  trap - EXIT
  finish "$tmp" "$dir"
}

build_control_plane() {
  local k8s etcd
  k8s=$(version_of "$here" k8s.io/kubernetes)
  etcd=$(version_of "$here" go.etcd.io/etcd/server/v3)
  local dir=$cache/k8s-$k8s-etcd-$etcd
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
  local complete=1 b
  for b in "${bins[@]}"; do [[ -x $dir/bin/$b ]] || complete=0; done
  if ((complete)); then
    say "reusing $dir/bin (kubernetes $k8s, etcd $etcd)"
    echo "$dir/bin"
    return
  fi
  local tmp
  tmp=$(mktemp -d "$cache/.build-k8s-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT

  local t0 total
  total=$(now)
  t0=$(now)
  (cd "$here" && go mod download)
  say "downloaded modules in $(since "$t0") s"

  # What hack/lib/version.sh stamps into a release build: without it the binaries report
  # v0.0.0-master. The date is the module's publication time, so builds are reproducible.
  local major minor date ld=()
  major=${k8s#v}
  major=${major%%.*}
  minor=${k8s#v*.}
  minor=${minor%%.*}
  date=$(cd "$here" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=("-X '$pkg.gitVersion=$k8s'" "-X '$pkg.gitMajor=$major'" "-X '$pkg.gitMinor=$minor'"
      "-X '$pkg.gitTreeState=clean'" "-X '$pkg.buildDate=$date'")
  done

  t0=$(now)
  (cd "$here" && nice -n 19 go build -trimpath -ldflags "-s -w ${ld[*]}" -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
  say "built kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $k8s in $(since "$t0") s"
  t0=$(now)
  (cd "$here" && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3)
  say "built etcd $etcd in $(since "$t0") s"
  trap - EXIT
  say "total $(since "$total") s"
  finish "$tmp" "$dir"
}

# One build of each kind at a time per cache (parallel test processes on a cold cache wait
# for the first); different kinds build side by side (scripts/test.sh overlaps them).
mkdir -p "$cache"
exec 9>"$cache/.lock${1:+-${1#--}}"
flock 9

case "${1:-}" in
  "") build_control_plane ;;
  --kwok) build_kwok ;;
  --helm) build_helm ;;
  --flux) build_flux ;;
  --argocd) build_argocd ;;
  *)
    echo "usage: $0 [--kwok | --helm | --flux | --argocd]" >&2
    exit 2
    ;;
esac
