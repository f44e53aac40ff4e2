#!/usr/bin/env python3
"""Static checks of Strata's deployment files; no Docker engine or cluster needed.

Checks deploy/Dockerfile, .dockerignore, docker-compose.yml, deploy/prometheus/*.yml and
every manifest under deploy/kubernetes (each kustomization's files, and, when `kubectl`
or `kustomize` is on PATH, the fully rendered base and overlays):

- YAML (and the TOML inside ConfigMaps) parses;
- image tags are pinned (a tag or digest, never `latest`);
- strata containers run non-root with a read-only root filesystem, have CPU and memory
  requests and limits, readiness on /readyz and liveness on /healthz, take their node id
  from the pod name and their advertised host from the pod IP (downward API), read
  --config from the mounted ConfigMap and have /data mounted;
- query-node pods drain themselves in a preStop hook (DELETE /v1/cluster/nodes/$POD_NAME)
  within their termination grace period;
- the PodDisruptionBudget and HorizontalPodAutoscaler target the query-node Deployment,
  and every role has a Service (a headless one too for query nodes);
- strata.toml only uses sections and keys the binary knows (read from the Rust sources);
- docker-compose.yml: services, health checks, depends_on conditions, scalable query
  nodes, volumes, the monitoring profile and Prometheus job names.

Usage: scripts/check_deploy.py [--no-render]. Exits 1 listing every problem found, 2 when
PyYAML or Python >= 3.11 is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # pragma: no cover
    print("check_deploy: Python >= 3.11 is required (tomllib)", file=sys.stderr)
    sys.exit(2)

try:
    import yaml
except ImportError:  # pragma: no cover
    print("check_deploy: PyYAML is required (apt-get install python3-yaml, or pip install pyyaml)", file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
ROLES = ("ingest-node", "query-node", "compactor")
REST_PORT = 7700
GRPC_PORT = 7701
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}

# Fallbacks when the Rust sources cannot be read; the sources win (see known_keys()).
TOP_LEVEL_FALLBACK = {
    "node_id", "listen", "grpc_listen", "advertise_host", "data_dir", "max_request_bytes",
    "storage", "etcd", "rpc", "ingest", "query", "compactor", "cache", "auth", "insecure",
}
STRUCT_SOURCES = {
    "": ("strata/src/config.rs", "Config"),
    "etcd": ("shared/coord/src/etcd/mod.rs", "EtcdConfig"),
    "rpc": ("shared/rpc/src/lib.rs", "RpcConfig"),
    "cache": ("shared/storage/src/cache/mod.rs", "CacheConfig"),
    "ingest": ("ingest-node/src/config.rs", "IngestConfig"),
    "query": ("query-node/src/config.rs", "QueryConfig"),
    "compactor": ("compactor/src/config.rs", "CompactorConfig"),
    "storage.s3": ("shared/storage/src/store.rs", "S3Config"),
    "auth": ("strata/src/auth/mod.rs", "AuthConfig"),
}

errors: list[str] = []
notes: list[str] = []


def err(where: object, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def load_yaml_docs(path: Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        err(rel(path), f"invalid YAML: {e}")
        return []
    for d in docs:
        if not isinstance(d, dict):
            err(rel(path), "a YAML document is not a mapping")
    return [d for d in docs if isinstance(d, dict)]


# ----------------------------------------------------------------------------- helpers


def struct_fields(path: Path, name: str) -> set[str] | None:
    """The `pub` field names of `pub struct {name} { ... }` in a Rust file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(r"pub struct " + re.escape(name) + r"\s*\{(.*?)\n\}", text, re.S)
    if not m:
        return None
    fields = set(re.findall(r"^\s*pub (\w+)\s*:", m.group(1), re.M))
    return fields or None


_KNOWN: dict[str, set[str] | None] = {}


def known_keys(section: str) -> set[str] | None:
    if section not in _KNOWN:
        src = STRUCT_SOURCES.get(section)
        fields = struct_fields(ROOT / src[0], src[1]) if src else None
        if section == "":
            fields = fields or TOP_LEVEL_FALLBACK
        if section == "storage.s3" and fields:
            fields = fields | {"kind"}
        _KNOWN[section] = fields
    return _KNOWN[section]


def image_pinned(image: object) -> str | None:
    """None when `image` names a pinned tag or digest, else why not."""
    if not isinstance(image, str) or not image:
        return "no image"
    image = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", image)  # compose defaults
    if "${" in image or "$" in image:
        return f"image {image!r} depends on a variable without a default"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (means latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest" or not tag:
        return f"image {image!r} uses the latest tag"
    return None


def check_strata_toml(text: str, where: str) -> None:
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        err(where, f"strata.toml is not valid TOML: {e}")
        return
    top = known_keys("")
    for key in cfg:
        if key not in top:
            err(where, f"strata.toml: unknown top-level key {key!r} (known: {', '.join(sorted(top))})")
    for section in ("etcd", "rpc", "ingest", "query", "compactor", "cache"):
        if section not in cfg:
            continue
        if not isinstance(cfg[section], dict):
            err(where, f"strata.toml: [{section}] must be a table")
            continue
        known = known_keys(section)
        for key in cfg[section]:
            if known is not None and key not in known:
                err(where, f"strata.toml: unknown key {section}.{key} (known: {', '.join(sorted(known))})")
    storage = cfg.get("storage")
    if storage is None:
        err(where, "strata.toml: no [storage] section (cluster roles would use the pod's local disk)")
    elif not isinstance(storage, dict):
        err(where, "strata.toml: [storage] must be a table")
    else:
        kind = storage.get("kind")
        if kind == "s3":
            known = known_keys("storage.s3")
            for key in storage:
                if known is not None and key not in known:
                    err(where, f"strata.toml: unknown key storage.{key} (known: {', '.join(sorted(known))})")
            if not storage.get("bucket"):
                err(where, "strata.toml: storage.kind = \"s3\" needs a bucket")
            for secret in ("access_key_id", "secret_access_key"):
                if secret in storage:
                    err(where, f"strata.toml: storage.{secret} in a ConfigMap; use the Secret (AWS_* env vars)")
        elif kind == "local":
            err(where, "strata.toml: storage.kind = \"local\" cannot be shared by several pods; use s3")
        else:
            err(where, f"strata.toml: storage.kind must be \"s3\", got {kind!r}")
    etcd = cfg.get("etcd")
    if not isinstance(etcd, dict) or not etcd.get("endpoints"):
        err(where, "strata.toml: [etcd] endpoints must be set")
    else:
        eps = etcd["endpoints"]
        if not isinstance(eps, list) or not all(isinstance(e, str) and re.match(r"https?://", e) for e in eps):
            err(where, f"strata.toml: etcd.endpoints must be a list of http(s) URLs, got {eps!r}")
        ttl = etcd.get("session_ttl_s", 2)
        if not isinstance(ttl, int) or ttl < 2:
            err(where, "strata.toml: etcd.session_ttl_s must be an integer >= 2")


# ----------------------------------------------------------------------------- Dockerfile


def check_dockerfile() -> None:
    path = ROOT / "deploy" / "Dockerfile"
    where = rel(path)
    try:
        text = path.read_text()
    except OSError:
        err(where, "missing")
        return
    # Join continuation lines, drop comments.
    lines = [l for l in text.splitlines() if not l.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines)).splitlines()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", "\n".join(logical), re.M))

    def resolve(s: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), s)

    froms = [resolve(l.split(None, 1)[1]).split() for l in logical if l.startswith("FROM ")]
    if len(froms) < 2:
        err(where, "must be multi-stage (a builder and a runtime stage)")
        return
    # `FROM image AS name`: a later `FROM name` continues that stage; follow it to the image.
    stages = {frm[2]: frm for frm in froms if len(frm) >= 3 and frm[1].upper() == "AS"}
    def image_of(frm: list) -> list:
        seen = set()
        while frm[0] in stages and frm[0] not in seen:
            seen.add(frm[0])
            frm = stages[frm[0]]
        return frm
    froms = [image_of(frm) for frm in froms]
    builder, runtime = froms[0], froms[-1]
    if not re.fullmatch(r"rust:1\.95(\.\d+)?-bookworm(@sha256:[0-9a-f]{64})?", builder[0]):
        err(where, f"builder must be a pinned rust:1.95*-bookworm image, got {builder[0]!r}")
    if not re.fullmatch(r"debian:(bookworm-slim|bookworm-\d{8}-slim|12(\.\d+)?-slim)(@sha256:[0-9a-f]{64})?", runtime[0]):
        err(where, f"runtime must be a pinned debian bookworm slim image, got {runtime[0]!r}")
    for frm in froms:
        why = image_pinned(frm[0])
        if why:
            err(where, why)
    body = "\n".join(logical)
    if not re.search(r"--mount=type=cache[^\n]*target=/usr/local/cargo/registry", body):
        err(where, "no BuildKit cache mount for the cargo registry (/usr/local/cargo/registry)")
    if not re.search(r"--mount=type=cache[^\n]*target=[^\s]*target\b", body):
        err(where, "no BuildKit cache mount for the target dir")
    if not re.search(r"cargo build --release -p strata --locked", body):
        err(where, "must run `cargo build --release -p strata --locked`")
    apt = re.findall(r"apt-get install[^\n]*", body)
    if apt:
        pkgs = {w for w in apt[-1].split() if not w.startswith("-") and w not in ("apt-get", "install", "&&")}
        pkgs = {p for p in pkgs if re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p) and p not in ("rm", "var", "lib", "fi")}
        extra = pkgs - {"ca-certificates", "curl"}
        if "ca-certificates" not in pkgs or "curl" not in pkgs or extra:
            err(where, f"the runtime should install only ca-certificates and curl, found {sorted(pkgs)}")
    users = re.findall(r"^USER\s+(\S+)", body, re.M)
    if not users or users[-1].split(":")[0] not in ("10001", "strata"):
        err(where, f"the final USER must be uid 10001, got {users[-1] if users else 'none'}")
    if not re.search(r"chown\s+10001(:10001)?\s+/data", body):
        err(where, "/data must be created and owned by 10001")
    if not re.search(r'^VOLUME\s+\[?"?/data', body, re.M):
        err(where, "no VOLUME /data")
    expose = re.findall(r"^EXPOSE\s+(.*)$", body, re.M)
    if not expose or not {"7700", "7701"} <= set(" ".join(expose).split()):
        err(where, "must EXPOSE 7700 7701")
    if not re.search(r"^HEALTHCHECK\b.*curl.*/healthz", body, re.M):
        err(where, "HEALTHCHECK must curl /healthz")
    if not re.search(r'^ENTRYPOINT\s+\["strata"\]', body, re.M):
        err(where, 'ENTRYPOINT must be ["strata"]')
    if not re.search(r'^CMD\s+\["standalone",\s*"--listen",\s*"0\.0\.0\.0:7700",\s*"--data-dir",\s*"/data"\]', body, re.M):
        err(where, 'CMD must be ["standalone", "--listen", "0.0.0.0:7700", "--data-dir", "/data"]')

    ignore = ROOT / ".dockerignore"
    try:
        entries = {l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")}
    except OSError:
        err(".dockerignore", "missing")
        return
    for must in ("target", "data", ".git", ".venv*"):
        if must not in entries and f"/{must}" not in entries:
            err(".dockerignore", f"must exclude {must}")
    for needed in (".cargo", "scripts", "Cargo.lock", "Cargo.toml", "scripts/protoc"):
        if needed in entries or f"/{needed}" in entries:
            err(".dockerignore", f"excludes {needed}, which the build needs")


# ----------------------------------------------------------------------------- compose


def compose_health_path(svc: dict) -> str | None:
    test = (svc.get("healthcheck") or {}).get("test")
    if isinstance(test, list):
        test = " ".join(str(t) for t in test)
    if not isinstance(test, str):
        return None
    m = re.search(r"https?://[^/\s]+(/\w+)", test)
    return m.group(1) if m else test


def mount_source(m: object) -> str | None:
    """The source of a compose volume entry (short or long syntax); None if anonymous."""
    if isinstance(m, dict):
        return m.get("source")
    parts = str(m).split(":")
    return parts[0] if len(parts) >= 2 else None


def mount_target(m: object) -> str | None:
    if isinstance(m, dict):
        return m.get("target")
    parts = str(m).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


SECRET_ENV = (
    "STRATA__AUTH__KEYS_FILE",
    "STRATA__TLS__CERT_FILE",
    "STRATA__TLS__KEY_FILE",
    "STRATA__RPC__TLS__CERT_FILE",
    "STRATA__RPC__TLS__KEY_FILE",
    "STRATA__RPC__TLS__CA_FILE",
)


def check_compose_security(svc: dict, w: str, secrets_volume: str | None) -> None:
    """A node serves with API keys and TLS (REST, and mutual TLS between nodes) from the
    secrets volume, never --insecure, and its health check speaks HTTPS."""
    if "--insecure" in [str(a) for a in svc.get("command") or []]:
        err(w, "must not run --insecure: the API is served with keys by default")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    mounted = [mount_target(m).rstrip("/") + "/" for m in svc.get("volumes") or [] if mount_source(m) == secrets_volume]
    for key in SECRET_ENV:
        value = str(env.get(key, ""))
        if not value:
            err(w, f"environment lacks {key} (security by default)")
        elif not any(value.startswith(m) for m in mounted):
            err(w, f"{key}={value} is not on the secrets volume {secrets_volume!r}")
    test = " ".join(map(str, (svc.get("healthcheck") or {}).get("test") or []))
    if "https://" not in test or "--cacert" not in test:
        err(w, "the health check must use https:// with --cacert (REST serves TLS)")
    deps = svc.get("depends_on") or {}
    got = (deps.get("secrets") or {}).get("condition") if isinstance(deps, dict) else None
    if got != "service_completed_successfully":
        err(w, f"depends_on secrets must have condition service_completed_successfully, got {got}")


def check_compose() -> None:
    path = ROOT / "docker-compose.yml"
    where = rel(path)
    docs = load_yaml_docs(path) if path.exists() else err(where, "missing") or []
    if not docs:
        return
    compose = docs[0]
    services = compose.get("services") or {}
    volumes = compose.get("volumes") or {}
    for name in ("minio", "minio-bucket", "etcd", *ROLES, "prometheus"):
        if name not in services:
            err(where, f"no service {name!r}")
    for name, svc in services.items():
        why = image_pinned(svc.get("image"))
        if why:
            err(where, f"service {name}: {why}")
    minio = services.get("minio") or {}
    if not re.fullmatch(r"(quay\.io/)?minio/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", str(minio.get("image", ""))):
        err(where, f"minio must be pinned to a RELEASE tag, got {minio.get('image')!r}")
    etcd = services.get("etcd") or {}
    if not str(etcd.get("image", "")).startswith("quay.io/coreos/etcd:v3.5"):
        err(where, f"etcd must be a pinned quay.io/coreos/etcd v3.5 image, got {etcd.get('image')!r}")
    etcd_cmd = " ".join(map(str, etcd.get("command") or []))
    for flag in ("--auto-compaction-retention", "--quota-backend-bytes"):
        if flag not in etcd_cmd:
            err(where, f"etcd: missing {flag}")
    for name in ("minio", "etcd"):
        if name in services and not (services[name].get("healthcheck") or {}).get("test"):
            err(where, f"service {name}: no health check")
    bucket = services.get("minio-bucket") or {}
    if "mb" not in " ".join(map(str, (bucket.get("command") or []) if isinstance(bucket.get("command"), list) else [bucket.get("command", "")])):
        err(where, "minio-bucket must create the bucket (mc mb)")
    if str(bucket.get("restart", "no")) not in ("no", "False", "false"):
        err(where, "minio-bucket is one-shot: restart must be \"no\"")

    secrets = services.get("secrets") or err(where, "no service 'secrets' (makes the API key and certificates)") or {}
    if secrets and str(secrets.get("restart", "no")) not in ("no", "False", "false"):
        err(where, "secrets is one-shot: restart must be \"no\"")
    script = " ".join(map(str, secrets.get("command") or []))
    for made in ("strata keys new", "strata certs new"):
        if secrets and made not in script:
            err(where, f"secrets must run `{made}`")
    secrets_volume = next((mount_source(m) for m in secrets.get("volumes") or [] if mount_source(m) in volumes), None)
    if secrets and not secrets_volume:
        err(where, "secrets must keep what it makes on a named volume")

    for role in ROLES:
        svc = services.get(role)
        if not svc:
            continue
        w = f"{where}: service {role}"
        check_compose_security(svc, w, secrets_volume)
        build = svc.get("build") or {}
        if not isinstance(build, dict) or build.get("dockerfile") != "deploy/Dockerfile" or build.get("context") not in (".", "./"):
            err(w, "must be built from deploy/Dockerfile with the repository root as context")
        cmd = svc.get("command")
        if not isinstance(cmd, list) or not cmd or cmd[0] != role:
            err(w, f"command must start with {role!r}")
        else:
            flags = dict(zip(cmd[1::2], cmd[2::2]))
            if flags.get("--listen") != f"0.0.0.0:{REST_PORT}" or flags.get("--grpc-listen") != f"0.0.0.0:{GRPC_PORT}":
                err(w, "must listen on 0.0.0.0:7700 (REST) and 0.0.0.0:7701 (gRPC)")
            if flags.get("--data-dir") != "/data":
                err(w, "must use --data-dir /data")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        for key in ("STRATA__STORAGE__KIND", "STRATA__STORAGE__BUCKET", "STRATA__STORAGE__ENDPOINT", "STRATA__ETCD__ENDPOINTS"):
            if key not in env:
                err(w, f"environment lacks {key}")
        if str(env.get("STRATA__STORAGE__KIND")) != "s3":
            err(w, "STRATA__STORAGE__KIND must be s3")
        for key in env:
            if key.startswith("STRATA__"):
                parts = key[len("STRATA__"):].lower().split("__")
                top = known_keys("")
                if parts[0] not in top:
                    err(w, f"{key}: unknown configuration section {parts[0]!r}")
                elif len(parts) == 2:
                    section = "storage.s3" if parts[0] == "storage" else parts[0]
                    known = known_keys(section)
                    if known is not None and parts[1] not in known | {"kind", "path"}:
                        err(w, f"{key}: unknown key {parts[0]}.{parts[1]}")
        deps = svc.get("depends_on") or {}
        want = {"minio": "service_healthy", "etcd": "service_healthy", "minio-bucket": "service_completed_successfully"}
        for dep, cond in want.items():
            got = (deps.get(dep) or {}).get("condition") if isinstance(deps, dict) else None
            if got != cond:
                err(w, f"depends_on {dep} must have condition {cond}, got {got}")
        health = compose_health_path(svc)
        expected = "/readyz" if role == "query-node" else "/healthz"
        if health != expected:
            err(w, f"health check must curl {expected}, got {health}")
        user = str(svc.get("user", ""))
        if user.split(":")[0] in ("0", "root"):
            err(w, "must not run as root (the image runs as uid 10001)")
        mounts = svc.get("volumes") or []
        data = [m for m in mounts if mount_target(m) == "/data"]
        if not data:
            err(w, "no volume at /data (disk cache)")
        if role != "query-node":
            for m in data:
                src = mount_source(m)
                if not src or src not in volumes:
                    err(w, "/data must be a named volume declared under volumes:")
        else:
            for key in ("container_name", "hostname"):
                if key in svc:
                    err(w, f"{key} prevents `--scale query-node=N` (every replica must differ)")
            for m in data:
                if mount_source(m):
                    err(w, "/data must not be a named volume: replicas would share one cache directory")
            for p in svc.get("ports") or []:
                spec = str(p if not isinstance(p, dict) else p.get("published", ""))
                parts = spec.split(":")
                host = parts[-2] if len(parts) >= 2 else ""
                if host and "-" not in host:
                    err(w, f"fixed host port {spec!r} prevents scaling; publish a range or none")
    for name in ("minio", "etcd"):
        mounts = (services.get(name) or {}).get("volumes") or []
        if not any(mount_source(m) in volumes for m in mounts):
            err(where, f"service {name}: data must be on a named volume")
    prom = services.get("prometheus") or {}
    if "monitoring" not in (prom.get("profiles") or []):
        err(where, "prometheus must be under the 'monitoring' profile")
    mounts = " ".join(map(str, prom.get("volumes") or []))
    if "deploy/prometheus/prometheus.yml" not in mounts:
        err(where, "prometheus must mount deploy/prometheus/prometheus.yml")


def check_prometheus() -> None:
    path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    docs = load_yaml_docs(path) if path.exists() else err(rel(path), "missing") or []
    if docs:
        jobs = {j.get("job_name"): j for j in docs[0].get("scrape_configs") or []}
        for role in ROLES:
            job = jobs.get(f"strata-{role}")
            if not job:
                err(rel(path), f"no scrape job strata-{role}")
                continue
            if job.get("metrics_path", "/metrics") != "/metrics":
                err(rel(path), f"job strata-{role}: metrics_path must be /metrics")
            sd = (job.get("dns_sd_configs") or [{}])[0]
            static = [t for c in job.get("static_configs") or [] for t in c.get("targets") or []]
            ports = {sd.get("port")} if sd else set()
            ports |= {int(t.rsplit(":", 1)[1]) for t in static if ":" in t}
            if REST_PORT not in ports:
                err(rel(path), f"job strata-{role}: must scrape the REST port {REST_PORT}")
    k8s = ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml"
    if k8s.exists():
        docs = load_yaml_docs(k8s)
        if docs and not any(j.get("kubernetes_sd_configs") for j in docs[0].get("scrape_configs") or []):
            err(rel(k8s), "no kubernetes_sd_configs job")


# ----------------------------------------------------------------------------- kubernetes


class Obj(dict):
    """A manifest object that remembers its file."""

    origin = ""


def kustomization_file(d: Path) -> Path | None:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (d / name).exists():
            return d / name
    return None


def load_kustomization(d: Path, seen: set[Path] | None = None) -> list[Obj]:
    """Objects of a kustomization's resources (recursively), patches not applied; checks
    that every referenced file exists and every patch has a target."""
    seen = seen if seen is not None else set()
    kfile = kustomization_file(d)
    if kfile is None:
        err(rel(d), "no kustomization.yaml")
        return []
    if kfile in seen:
        return []
    seen.add(kfile)
    docs = load_yaml_docs(kfile)
    k = docs[0] if docs else {}
    objs: list[Obj] = []
    for res in k.get("resources") or []:
        p = (d / res).resolve()
        if p.is_dir():
            objs += load_kustomization(p, seen)
        elif p.is_file():
            for doc in load_yaml_docs(p):
                o = Obj(doc)
                o.origin = rel(p)
                objs.append(o)
        else:
            err(rel(kfile), f"resource {res!r} does not exist")
    for patch in k.get("patches") or []:
        target = patch.get("target") or {}
        if "path" in patch:
            p = d / patch["path"]
            if not p.is_file():
                err(rel(kfile), f"patch {patch['path']!r} does not exist")
                continue
            for doc in load_yaml_docs(p):
                kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
                if not target and not any(o.get("kind") == kind and o.get("metadata", {}).get("name") == name for o in objs):
                    err(rel(p), f"patch target {kind}/{name} is not among the resources")
                check_patch_content(doc, rel(p))
        if target and not any(
            o.get("kind") == target.get("kind") and o.get("metadata", {}).get("name") == target.get("name") for o in objs
        ):
            err(rel(kfile), f"patch target {target.get('kind')}/{target.get('name')} is not among the resources")
    for img in k.get("images") or []:
        if "newTag" in img and str(img["newTag"]) in ("", "latest"):
            err(rel(kfile), f"images: {img.get('name')} must have a pinned newTag")
    for rep in k.get("replicas") or []:
        if not any(o.get("kind") == "Deployment" and o["metadata"]["name"] == rep.get("name") for o in objs):
            err(rel(kfile), f"replicas: no Deployment {rep.get('name')}")
    return objs


def check_patch_content(doc: dict, where: str) -> None:
    """What can be checked on a partial object."""
    if doc.get("kind") == "ConfigMap" and "strata.toml" in (doc.get("data") or {}):
        check_strata_toml(doc["data"]["strata.toml"], where)
    for c in containers_of(doc):
        if "image" in c:
            why = image_pinned(c["image"])
            if why:
                err(where, why)
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if got is not None and c.get("name") == "strata" and got != path:
                err(where, f"{probe} must be on {path}, got {got}")


def pod_spec(o: dict) -> dict | None:
    kind = o.get("kind")
    if kind == "Pod":
        return o.get("spec")
    if kind == "CronJob":
        return (((o.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    return ((o.get("spec") or {}).get("template") or {}).get("spec")


def containers_of(o: dict) -> list[dict]:
    spec = pod_spec(o) or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def is_strata(c: dict) -> bool:
    image = str(c.get("image", ""))
    base = image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    return c.get("name") == "strata" or base == "strata"


def selects(selector: dict | None, labels: dict | None) -> bool:
    match = (selector or {}).get("matchLabels") if selector and "matchLabels" in selector else selector
    return bool(match) and all((labels or {}).get(k) == v for k, v in match.items())


def role_of(c: dict) -> str | None:
    args = list(c.get("command") or [])[1:] + list(c.get("args") or []) if c.get("command") else list(c.get("args") or [])
    return args[0] if args and args[0] in ROLES else None


def flag_values(c: dict) -> dict[str, str]:
    args = list(c.get("command") or []) + list(c.get("args") or [])
    out = {}
    for i, a in enumerate(args):
        a = str(a)
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            out[k] = v
        elif a.startswith("--") and i + 1 < len(args):
            out[a] = str(args[i + 1])
    return out


def env_source(c: dict, name: str) -> dict | None:
    for e in c.get("env") or []:
        if e.get("name") == name:
            return e
    return None


def port_number(c: dict, port: object) -> object:
    if isinstance(port, str):
        for p in c.get("ports") or []:
            if p.get("name") == port:
                return p.get("containerPort")
    return port


def check_pod_keys(c: dict, cw: str, mounts: dict, volumes: dict) -> None:
    """A pod serves its API with keys from the Secret strata-api-keys and TLS from the Secret
    strata-tls, never --insecure, probes over HTTPS, and its own calls to the admin API
    (lifecycle hooks) carry its token over HTTPS."""
    if "--insecure" in [str(a) for a in c.get("args") or []]:
        err(cw, "must not run --insecure: the API is served with keys by default")
    keys_file = str((env_source(c, "STRATA__AUTH__KEYS_FILE") or {}).get("value", ""))
    if not keys_file:
        err(cw, "env STRATA__AUTH__KEYS_FILE (API keys) is not set")
    else:
        vol = volumes.get((mounts.get(str(Path(keys_file).parent)) or {}).get("name")) or {}
        if (vol.get("secret") or {}).get("secretName") != "strata-api-keys":
            err(cw, f"{keys_file} is not in a mounted Secret strata-api-keys")
    token = ((env_source(c, "STRATA_API_KEY") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    if token.get("name") != "strata-api-keys":
        err(cw, "env STRATA_API_KEY must come from the Secret strata-api-keys")
    for hook in ((c.get("lifecycle") or {}).values()):
        cmd = " ".join(map(str, ((hook or {}).get("exec") or {}).get("command") or []))
        if "/v1/" in cmd and "Authorization: Bearer ${STRATA_API_KEY}" not in cmd:
            err(cw, "a lifecycle hook calls the API without the pod's key")
        if "/v1/" in cmd and ("https://" not in cmd or "--cacert" not in cmd):
            err(cw, "a lifecycle hook must call the API over https:// with --cacert (REST serves TLS)")
    # TLS: REST over HTTPS and mutual TLS between nodes, from the Secret strata-tls.
    for var in ("STRATA__TLS__CERT_FILE", "STRATA__TLS__KEY_FILE", "STRATA__RPC__TLS__CERT_FILE",
                "STRATA__RPC__TLS__KEY_FILE", "STRATA__RPC__TLS__CA_FILE"):
        value = str((env_source(c, var) or {}).get("value", ""))
        vol = volumes.get((mounts.get(str(Path(value).parent)) or {}).get("name")) or {} if value else {}
        if not value:
            err(cw, f"env {var} (TLS) is not set")
        elif (vol.get("secret") or {}).get("secretName") != "strata-tls":
            err(cw, f"{var}={value} is not in a mounted Secret strata-tls")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get and get.get("scheme") != "HTTPS":
            err(cw, f"{probe} must use scheme HTTPS (REST serves TLS)")


def check_objects(objs: list[Obj], where: str, expect_replicas: dict[str, int] | None = None) -> None:
    """Checks on a complete set of objects (a kustomization's rendered output or base)."""
    deployments: dict[str, dict] = {}
    configmaps = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Secret"}
    for o in objs:
        w = f"{where} {getattr(o, 'origin', '') or ''} {o.get('kind')}/{(o.get('metadata') or {}).get('name')}".replace("  ", " ")
        if not o.get("apiVersion") or not o.get("kind") or not (o.get("metadata") or {}).get("name"):
            err(w, "apiVersion, kind and metadata.name are required")
            continue
        if o.get("kind") == "ConfigMap" and "strata.toml" in (o.get("data") or {}):
            check_strata_toml(o["data"]["strata.toml"], w)
        if o["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(o) or {}
        psc = spec.get("securityContext") or {}
        for c in containers_of(o):
            cw = f"{w} container {c.get('name')}"
            why = image_pinned(c.get("image"))
            if why:
                err(cw, why)
            csc = c.get("securityContext") or {}
            uid = csc.get("runAsUser", psc.get("runAsUser"))
            nonroot = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            if nonroot is not True or uid == 0:
                err(cw, "must run as non-root (runAsNonRoot: true, runAsUser not 0)")
            if csc.get("allowPrivilegeEscalation") is not False:
                err(cw, "allowPrivilegeEscalation must be false")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        err(cw, f"resources.{kind}.{r} not set")
            if not is_strata(c):
                continue
            role = role_of(c)
            if role is None:
                err(cw, f"args must start with a role ({', '.join(ROLES)})")
                continue
            if o["kind"] != "Deployment":
                err(cw, "strata roles run as Deployments")
            elif role in deployments:
                err(cw, f"second Deployment for role {role}")
            else:
                deployments[role] = o
            flags = flag_values(c)
            if flags.get("--node-id") != "$(POD_NAME)":
                err(cw, f"--node-id must be $(POD_NAME), got {flags.get('--node-id')!r}")
            if flags.get("--advertise-host") != "$(POD_IP)":
                err(cw, f"--advertise-host must be $(POD_IP), got {flags.get('--advertise-host')!r}")
            for var, path in (("POD_NAME", "metadata.name"), ("POD_IP", "status.podIP")):
                e = env_source(c, var) or {}
                got = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if got != path:
                    err(cw, f"env {var} must come from the downward API fieldRef {path}, got {got!r}")
            if flags.get("--listen") != f"0.0.0.0:{REST_PORT}" or flags.get("--grpc-listen") != f"0.0.0.0:{GRPC_PORT}":
                err(cw, "must listen on 0.0.0.0:7700 (REST) and 0.0.0.0:7701 (gRPC)")
            mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
            volumes = {v.get("name"): v for v in spec.get("volumes") or []}
            config = flags.get("--config")
            if not config:
                err(cw, "no --config (strata.toml from the ConfigMap)")
            else:
                mount = mounts.get(str(Path(config).parent))
                vol = volumes.get((mount or {}).get("name")) or {}
                cm = (vol.get("configMap") or {}).get("name")
                if not cm:
                    err(cw, f"--config {config} is not in a mounted ConfigMap")
                elif cm not in configmaps:
                    err(cw, f"ConfigMap {cm} does not exist")
                elif Path(config).name not in (configmaps[cm].get("data") or {}):
                    err(cw, f"ConfigMap {cm} has no key {Path(config).name}")
            check_pod_keys(c, cw, mounts, volumes)
            if flags.get("--data-dir") != "/data":
                err(cw, "--data-dir must be /data")
            data = volumes.get((mounts.get("/data") or {}).get("name")) or {}
            if not any(k in data for k in ("emptyDir", "ephemeral", "persistentVolumeClaim")):
                err(cw, "/data must be an emptyDir or a PVC")
            if csc.get("readOnlyRootFilesystem") is not True:
                err(cw, "readOnlyRootFilesystem must be true")
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path:
                    err(cw, f"{probe} must be an httpGet on {path}, got {get.get('path')!r}")
                elif port_number(c, get.get("port")) != REST_PORT:
                    err(cw, f"{probe} must use the REST port {REST_PORT}")
            startup = ((c.get("startupProbe") or {}).get("httpGet") or {}).get("path")
            if startup not in (None, "/healthz"):
                err(cw, f"startupProbe must be on /healthz, got {startup!r}")
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                ref = ((env_source(c, var) or {}).get("valueFrom") or {}).get("secretKeyRef")
                if not ref:
                    err(cw, f"env {var} must come from a Secret (secretKeyRef)")
                elif not ref.get("optional") and ref.get("name") not in secrets:
                    err(cw, f"Secret {ref.get('name')} (for {var}) is not defined and not optional")
            if role == "query-node":
                hook = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}
                cmd = " ".join(map(str, hook.get("command") or []))
                if not ("DELETE" in cmd and "/v1/cluster/nodes/" in cmd and "POD_NAME" in cmd):
                    err(cw, "preStop must call DELETE /v1/cluster/nodes/$POD_NAME on the node itself")
                if "$(POD_NAME)" in cmd:
                    err(cw, "preStop: $(POD_NAME) is shell command substitution inside sh -c; use ${POD_NAME}")
                if not re.search(r"//(127\.0\.0\.1|localhost):7700/", cmd):
                    err(cw, "preStop must call the pod itself (127.0.0.1:7700)")
                m = re.search(r"wait_ms=(\d+)", cmd)
                wait_s = int(m.group(1)) / 1000 if m else 30
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace < wait_s + 15:
                    err(cw, f"terminationGracePeriodSeconds {grace} is too short for a {wait_s:.0f} s drain (+15 s)")
    is_full = any(o.get("kind") == "Deployment" for o in objs)
    if not is_full:
        return
    for role in ROLES:
        d = deployments.get(role)
        if not d:
            err(where, f"no Deployment running `strata {role}`")
            continue
        if expect_replicas and d["spec"].get("replicas") != expect_replicas.get(role):
            err(where, f"Deployment {d['metadata']['name']}: replicas {d['spec'].get('replicas')}, expected {expect_replicas[role]}")
        labels = d["spec"]["template"]["metadata"].get("labels") or {}
        if not selects(d["spec"].get("selector"), labels):
            err(where, f"Deployment {d['metadata']['name']}: selector does not match its pod labels")
        others = [deployments[r]["spec"]["template"]["metadata"].get("labels") for r in ROLES if r != role and r in deployments]
        services = [s for s in objs if s.get("kind") == "Service" and selects(s["spec"].get("selector"), labels)]
        for s in services:
            # The client entry point (component `api`) is meant to select every role: each
            # node answers the whole REST API (decision 0016). Any other Service is per role.
            entry = (s["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "api"
            if not entry and any(selects(s["spec"].get("selector"), l) for l in others):
                err(where, f"Service {s['metadata']['name']} selects pods of several roles")
        if not any((s["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "api" for s in services):
            err(where, f"no client entry point Service (component `api`) selects the {role} pods")
        ports = lambda s: {p.get("port") for p in s["spec"].get("ports") or []}  # noqa: E731
        if not any(s["spec"].get("clusterIP") != "None" and s["spec"].get("type", "ClusterIP") == "ClusterIP"
                   and {REST_PORT, GRPC_PORT} <= ports(s) for s in services):
            err(where, f"no ClusterIP Service with ports 7700 and 7701 for {role}")
        if role == "query-node":
            if not any(s["spec"].get("clusterIP") == "None" for s in services):
                err(where, "no headless Service for query nodes")
            pdbs = [p for p in objs if p.get("kind") == "PodDisruptionBudget"]
            qpdb = [p for p in pdbs if selects(p["spec"].get("selector"), labels)]
            if not qpdb:
                err(where, "no PodDisruptionBudget selecting the query-node pods")
            for p in qpdb:
                if any(selects(p["spec"].get("selector"), l) for l in others):
                    err(where, f"PodDisruptionBudget {p['metadata']['name']} selects other roles too")
                if not isinstance(p["spec"].get("minAvailable"), int) or p["spec"]["minAvailable"] < 1:
                    err(where, f"PodDisruptionBudget {p['metadata']['name']}: minAvailable must be >= 1")
            hpas = [h for h in objs if h.get("kind") == "HorizontalPodAutoscaler"]
            qhpa = [h for h in hpas if (h["spec"].get("scaleTargetRef") or {}).get("kind") == "Deployment"
                    and h["spec"]["scaleTargetRef"].get("name") == d["metadata"]["name"]]
            if not qhpa:
                err(where, f"no HorizontalPodAutoscaler targeting Deployment {d['metadata']['name']}")
            for h in hpas:
                if h not in qhpa:
                    err(where, f"HorizontalPodAutoscaler {h['metadata']['name']} targets something else")
            for h in qhpa:
                lo, hi = h["spec"].get("minReplicas", 1), h["spec"].get("maxReplicas", 0)
                if not 1 <= lo <= hi:
                    err(where, f"HorizontalPodAutoscaler {h['metadata']['name']}: need 1 <= minReplicas <= maxReplicas")
                metrics = h["spec"].get("metrics") or []
                if not any((m.get("resource") or {}).get("name") == "cpu" for m in metrics):
                    err(where, f"HorizontalPodAutoscaler {h['metadata']['name']}: no CPU metric")
                for p in qpdb:
                    if isinstance(p["spec"].get("minAvailable"), int) and p["spec"]["minAvailable"] >= lo:
                        err(where, f"PodDisruptionBudget minAvailable {p['spec']['minAvailable']} >= HPA minReplicas {lo}: "
                            "no pod could ever be evicted")


def render(d: Path) -> list[Obj] | None:
    for cmd in (["kubectl", "kustomize", str(d)], ["kustomize", "build", str(d)]):
        if shutil.which(cmd[0]):
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                continue
            if out.returncode != 0:
                err(rel(d), f"`{' '.join(cmd[:2])}` failed: {out.stderr.strip()}")
                return []
            objs = []
            for doc in yaml.safe_load_all(out.stdout):
                if isinstance(doc, dict):
                    o = Obj(doc)
                    o.origin = ""
                    objs.append(o)
            return objs
    return None


def check_kubernetes(do_render: bool) -> None:
    if not K8S.is_dir():
        err(rel(K8S), "missing")
        return
    for path in sorted(K8S.rglob("*.y*ml")):
        load_yaml_docs(path)  # every file parses
    base = K8S / "base"
    objs = load_kustomization(base)
    check_objects(objs, "deploy/kubernetes/base", {"ingest-node": 1, "query-node": 2, "compactor": 1})
    template = base / "secret-s3.example.yaml"
    if template.exists():
        docs = load_yaml_docs(template)
        keys = set((docs[0].get("stringData") or docs[0].get("data") or {}) if docs else {})
        if not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= keys:
            err(rel(template), "must hold AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    else:
        err(rel(template), "missing (Secret template for the S3 credentials)")
    overlays = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir()) if (K8S / "overlays").is_dir() else []
    for name in ("dev", "production"):
        if not (K8S / "overlays" / name).is_dir():
            err("deploy/kubernetes/overlays", f"no {name} overlay")
    for d in overlays:
        own = load_kustomization(d)
        # The overlay's own resources (e.g. MinIO, etcd) are complete objects.
        check_objects([o for o in own if not o.origin.startswith("deploy/kubernetes/base")], rel(d))
    if not do_render:
        notes.append("kustomize rendering skipped (--no-render)")
        return
    for d in [base, *overlays]:
        rendered = render(d)
        if rendered is None:
            notes.append("neither kubectl nor kustomize on PATH: overlays were checked file by file, not rendered")
            return
        if rendered:
            check_objects(rendered, f"{rel(d)} (rendered)", {"ingest-node": 1, "query-node": 2, "compactor": 1} if d == base else None)
            notes.append(f"rendered and checked {rel(d)}: {len(rendered)} objects")


def main() -> int:
    do_render = "--no-render" not in sys.argv[1:]
    os.chdir(ROOT)
    check_dockerfile()
    check_compose()
    check_prometheus()
    check_kubernetes(do_render)
    for n in notes:
        print(f"check_deploy: {n}")
    if errors:
        for e in errors:
            print(f"check_deploy: ERROR {e}", file=sys.stderr)
        print(f"check_deploy: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print("check_deploy: Dockerfile, docker-compose.yml, Prometheus and Kubernetes files OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
