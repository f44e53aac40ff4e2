#!/usr/bin/env bash
# Runs the real docker-compose.yml (CI, after the tests): three query nodes, an ingest
# node, a compactor, etcd and an S3 server, then scripts/compose_smoke.py through it
# (ingest, recall, a killed query node, a restarted ingest node, scaling 3 → 4), then
# `down -v`. Prints each phase's time.
#
# No registry is reachable here, so images are made locally:
#   strata-ci/base:bookworm      debootstrap --variant=minbase bookworm (with curl and
#                                ca-certificates), `docker import`ed; kept between runs
#   strata:ci                    deploy/Dockerfile's `prebuilt` target with the strata
#                                binary the tests built ($STRATA_BIN, stripped)
#   strata-ci/etcd-standin       Debian's etcd at the upstream image's paths
#   strata-ci/minio-standin      SeaweedFS behind `minio` / `mc` shims
# with deploy/ci/docker-compose.ci.yml, which changes only those images.
#
# Installs what is missing (Debian): docker.io, docker-compose, debootstrap, etcd-server,
# etcd-client; starts dockerd when none answers. Needs root (or sudo) for that.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
started=$SECONDS
step() { echo "== compose_smoke: $* ($((SECONDS - started)) s)"; }
fail() { echo "compose_smoke: FAILED: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "tools"
missing=()
[ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's client: it builds with the daemon's own BuildKit (a newer client elsewhere on
# PATH may want a buildx plugin instead).
DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=1
if ! $DOCKER info >/dev/null 2>&1; then
  step "starting dockerd"
  as_root sh -c 'nohup /usr/sbin/dockerd > /var/log/strata-ci-dockerd.log 2>&1 &'
  for _ in $(seq 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 1; done
  $DOCKER info >/dev/null 2>&1 || fail "dockerd did not start (see /var/log/strata-ci-dockerd.log)"
fi

BASE=strata-ci/base:bookworm
if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
  step "debootstrap the base image $BASE"
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  root=$(mktemp -d /tmp/strata-ci-base.XXXXXX)
  as_root debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  as_root sh -c "rm -rf '$root'/var/cache/apt/archives/*.deb '$root'/var/lib/apt/lists/*; tar -C '$root' -c . | $DOCKER import - $BASE >/dev/null"
  as_root rm -rf "$root"
fi

step "strata binary"
bin=$(scripts/strata_bin.sh)
step "images"
ctx=$(mktemp -d /tmp/strata-ci-images.XXXXXX)
project=strata-ci
compose=(docker-compose -p "$project" -f docker-compose.yml -f deploy/ci/docker-compose.ci.yml)
export STRATA_TAG=ci COMPOSE_HTTP_TIMEOUT=120 DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
cleanup() {
  status=$?
  if [ $status -ne 0 ]; then
    echo "--- docker-compose ps" >&2; "${compose[@]}" ps >&2 || true
    echo "--- logs (last 30 lines of each service)" >&2; "${compose[@]}" logs --tail=30 >&2 || true
  fi
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$ctx"
}
trap cleanup EXIT
mkdir -p "$ctx/strata" "$ctx/etcd" "$ctx/minio"
strip -o "$ctx/strata/strata" "$bin"
$DOCKER build -q -f deploy/Dockerfile --target prebuilt --build-arg RUNTIME_IMAGE=$BASE -t strata:ci "$ctx/strata" >/dev/null
cp "$(command -v etcd)" "$(command -v etcdctl)" deploy/ci/etcd-standin/Dockerfile "$ctx/etcd/"
$DOCKER build -q --build-arg BASE_IMAGE=$BASE -t strata-ci/etcd-standin:latest "$ctx/etcd" >/dev/null
weed=${STRATA_WEED_BIN:-$HOME/.cache/strata/venv-weed/bin/weed}
[ -x "$weed" ] || fail "no weed binary at $weed (scripts/test.sh installs it)"
cp "$weed" deploy/ci/minio-standin/{Dockerfile,minio,mc} "$ctx/minio/"
$DOCKER build -q --build-arg BASE_IMAGE=$BASE -t strata-ci/minio-standin:latest "$ctx/minio" >/dev/null

"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
python3 scripts/compose_smoke.py --project "$project" --docker "$DOCKER" -- "${compose[@]}"
step "OK"
