#!/usr/bin/env bash
# Static checks of the deployment files (no Docker engine, no cluster needed), run by CI:
#   1. `docker compose config -q` (or the old python `docker-compose`) on docker-compose.yml,
#      without and with the `monitoring` profile;
#   2. scripts/check_deploy.py: Dockerfile, compose, Prometheus and Kubernetes checks
#      (renders the kustomize overlays too when `kubectl` or `kustomize` is on PATH);
#   3. kubernetes-validate --strict on every rendered overlay (with kubectl or kustomize).
# Installs what is missing from Debian (docker-compose, python3-yaml) when apt-get exists.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
fi
apt_updated=
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "check_deploy: $* missing and no apt-get to install it" >&2
    exit 1
  fi
  if [ -z "$apt_updated" ]; then
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
  echo "== installing $* (Debian)"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A Python >= 3.11 (tomllib) with PyYAML: python3 on PATH, else Debian's, else install
# python3-yaml for Debian's python3.
has_yaml() { "$1" -c 'import sys, tomllib, yaml; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; }
python=
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && has_yaml "$candidate"; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  apt_install python3 python3-yaml
  python=/usr/bin/python3
  has_yaml "$python" || { echo "check_deploy: /usr/bin/python3 has no PyYAML or is older than 3.11" >&2; exit 1; }
fi

# Compose: the v2 plugin when present, else the standalone docker-compose (v1, Debian's
# python package): both validate and interpolate a file without a Docker engine.
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  apt_install docker-compose
  compose=(docker-compose)
fi

echo "== ${compose[*]} config -q (docker-compose.yml)"
"${compose[@]}" -f docker-compose.yml config -q
echo "== ${compose[*]} --profile monitoring config -q"
"${compose[@]}" -f docker-compose.yml --profile monitoring config -q
test "$("${compose[@]}" -f docker-compose.yml --profile monitoring config --services | grep -c '^prometheus$')" = 1 \
  || { echo "check_deploy: the monitoring profile does not enable the prometheus service" >&2; exit 1; }

if command -v promtool >/dev/null 2>&1; then
  echo "== promtool check config"
  promtool check config --syntax-only deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-kubernetes.yml
fi

echo "== scripts/check_deploy.py ($python)"
"$python" scripts/check_deploy.py

# Every overlay, rendered, against the Kubernetes API schemas (kubernetes-validate bundles
# them, so no cluster or network is needed), strictly: unknown fields are errors. The
# tool lives in a venv outside the repo ($STRATA_DEPLOY_VENV), from pinned requirements.
if command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1; then
  venv="${STRATA_DEPLOY_VENV:-$HOME/.cache/strata/venv-deploy}"
  requirements=scripts/requirements-deploy.txt
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "check_deploy: cannot create a venv (Debian: python3-venv)" >&2; exit 1; }
  fi
  if ! cmp -s "$requirements" "$venv/.strata-requirements-deploy"; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.strata-requirements-deploy"
  fi
  rendered=$(mktemp -d)
  trap 'rm -rf "$rendered"' EXIT
  for overlay in deploy/kubernetes/overlays/*/; do
    name=$(basename "$overlay")
    if command -v kubectl >/dev/null 2>&1; then
      kubectl kustomize "$overlay" > "$rendered/$name.yaml"
    else
      kustomize build "$overlay" > "$rendered/$name.yaml"
    fi
    echo "== kubernetes-validate --strict ($name overlay, Kubernetes $("$venv/bin/kubernetes-validate" --version | awk '{print $NF}'))"
    "$venv/bin/kubernetes-validate" --strict --quiet "$rendered/$name.yaml"
  done
else
  echo "check_deploy: neither kubectl nor kustomize on PATH: the overlays were not validated against the Kubernetes schemas" >&2
fi
