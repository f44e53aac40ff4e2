#!/usr/bin/env bash
# Static checks of the deployment files (no Docker engine, no cluster needed), run by CI:
#   1. `docker compose config -q` (or the old python `docker-compose`) on docker-compose.yml,
#      without and with the `monitoring` profile;
#   2. scripts/check_deploy.py: Dockerfile, compose, Prometheus and Kubernetes checks
#      (renders the kustomize overlays too when `kubectl` or `kustomize` is on PATH).
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
