#!/usr/bin/env bash
# Runs every test of the workspace. Installs the system tools the tests drive for real
# (kubectl, database servers) when they are missing and this runs as root with apt.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# kubectl: use the machine's own if there is one; Debian's package would clash with it.
command -v kubectl >/dev/null || need+=(kubernetes-client)
# Real database servers for the backup presets' round-trip tests (operator/tests/presets_*.rs),
# and BusyBox to run the preset scripts as the Alpine-based images do.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v redis-server >/dev/null || need+=(redis-server)
command -v busybox >/dev/null || need+=(busybox)
# Lua, to run the Argo CD health check we ship (operator/tests/argocd_health.rs).
command -v lua5.4 >/dev/null || need+=(lua5.4)

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

# The simulator and the kustomize base need a kubectl of 1.27 or newer; Debian 12's
# kubernetes-client is 1.20 (it insists on the OpenAPI v2 protobuf document). Say so plainly
# instead of failing in the middle of the kubectl tests.
minor=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n 1)
if [ -n "$minor" ] && [ "$minor" -lt 27 ]; then
  echo "kubectl 1.$minor is too old for these tests: install kubectl 1.27 or newer" >&2
  exit 1
fi

cargo test --workspace --locked "$@"
