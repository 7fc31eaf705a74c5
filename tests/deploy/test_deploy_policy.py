"""Policy checks on what Keel deploys: the kustomize-built manifests of every overlay, the compose
file, the Dockerfile, prometheus.yml, and the shutdown timeout budget that ties them together.

The manifests are built here with a real kustomize (a `kustomize` >= v4 on PATH, or kubectl's
built-in one). When neither is installed this FAILS and says to run scripts/deploy_check.sh, which
installs one and also runs kubernetes-validate, promtool, hadolint and the compose schema check.
"""

from __future__ import annotations

import functools
import json
import os
import re
import runpy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.gunicorn_worker import SHUTDOWN_RESERVE_SECONDS, KeelUvicornWorker, drain_timeout_for

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (REPO / "k8s" / "overlays").iterdir() if p.is_dir())
Manifest = dict[str, Any]
CLAIMED_PYTHONS = re.findall(
    r'"Programming Language :: Python :: (3\.\d+)"', (REPO / "pyproject.toml").read_text()
)


def _kustomize_command() -> list[str]:
    for command, version_args in (
        (["kustomize", "build"], ["kustomize", "version"]),
        (["kubectl", "kustomize"], ["kubectl", "version", "--client"]),
    ):
        if shutil.which(command[0]) is None:
            continue
        output = subprocess.run(version_args, capture_output=True, text=True, check=False).stdout
        match = re.search(r"v(\d+)\.\d+\.\d+", output.split("Kustomize Version:")[-1])
        if match and int(match.group(1)) >= 4:
            return command
    pytest.fail(
        "no kustomize >= v4 on PATH: run `bash scripts/deploy_check.sh` first (installs it)"
    )


@functools.cache
def _built(overlay: str) -> tuple[Manifest, ...]:
    command = [*_kustomize_command(), str(REPO / "k8s" / "overlays" / overlay)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    return _built(request.param)


def one(manifests: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(manifests: tuple[Manifest, ...]) -> list[tuple[str, Manifest]]:
    return [
        (f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"])
        for m in manifests
        if m["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}
    ]


def config(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap", "keel-config")["data"]
    return data


def gunicorn_settings(**env: str) -> dict[str, Any]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return runpy.run_path(str(REPO / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert duration, "empty duration"
    assert match, f"unparsed duration {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


# --- Kubernetes: hardening -------------------------------------------------------------------


def test_every_pod_is_hardened(manifests: tuple[Manifest, ...]) -> None:
    specs = pod_specs(manifests)
    assert {name for name, _ in specs} == {
        "Deployment/keel-api",
        "Deployment/keel-worker",  # feature: worker
        "Job/keel-migrate",
    }
    for name, spec in specs:
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == "keel", name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] >= 10000, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in ctx["capabilities"], where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            # The only writable path is a tmpfs on /tmp (prometheus multiprocess files too).
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert set(mounts) == {"/tmp"}, where  # noqa: S108
            volume = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])  # noqa: S108
            assert volume["emptyDir"]["medium"] == "Memory", where


def test_service_account_mounts_no_token(manifests: tuple[Manifest, ...]) -> None:
    assert one(manifests, "ServiceAccount", "keel")["automountServiceAccountToken"] is False


def test_namespace_enforces_restricted_pod_security(manifests: tuple[Manifest, ...]) -> None:
    (namespace,) = [m for m in manifests if m["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    namespaced = [m for m in manifests if m["kind"] != "Namespace"]
    assert {m["metadata"]["namespace"] for m in namespaced} == {namespace["metadata"]["name"]}


def test_network_policy_denies_by_default_then_allows_only_needed_flows(
    manifests: tuple[Manifest, ...],
) -> None:
    deny = one(manifests, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    api_in = one(manifests, "NetworkPolicy", "keel-api-ingress")["spec"]
    assert [p["port"] for rule in api_in["ingress"] for p in rule["ports"]] == [8000]
    egress = one(manifests, "NetworkPolicy", "keel-egress")["spec"]["egress"]
    ports = {p["port"] for rule in egress for p in rule["ports"]}
    assert {53, 5432, 6379} <= ports


def test_secrets_are_placeholders_or_absent(manifests: tuple[Manifest, ...]) -> None:
    secrets = [m for m in manifests if m["kind"] == "Secret"]
    for secret in secrets:
        for key, value in secret.get("stringData", {}).items():
            assert "REPLACE_ME" in value or key == "REDIS_URL", (key, value)
    overlay_is_prod = config(manifests)["ENVIRONMENT"] == "production"
    assert not (overlay_is_prod and secrets), "prod must not ship a Secret (it would overwrite)"


# feature: files
def test_attachments_use_an_existing_bucket_with_keys_from_the_secret(
    manifests: tuple[Manifest, ...],
) -> None:
    data = config(manifests)
    assert data["S3_ENDPOINT_URL"].startswith("https://")
    assert data["S3_REGION"]
    assert data["S3_BUCKET"]
    assert data["S3_CREATE_BUCKET"] == "false"  # production buckets are made out of band
    assert not {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"} & set(data)  # secrets, not config
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        assert {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    egress = one(manifests, "NetworkPolicy", "keel-egress")["spec"]["egress"]
    assert 443 in {p["port"] for rule in egress for p in rule["ports"]}


# end feature: files
# --- Kubernetes: the api -----------------------------------------------------------------------


def test_api_has_replicas_spread_hpa_pdb_service_ingress(manifests: tuple[Manifest, ...]) -> None:
    api = one(manifests, "Deployment", "keel-api")
    assert api["spec"]["replicas"] >= 2
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spread = api["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    hpa = one(manifests, "HorizontalPodAutoscaler", "keel-api")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "keel-api"
    assert hpa["minReplicas"] >= 2
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    pdb = one(manifests, "PodDisruptionBudget", "keel-api")["spec"]
    assert pdb["minAvailable"] >= 1
    assert pdb["minAvailable"] < api["spec"]["replicas"], "a PDB that blocks every drain"
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    service = one(manifests, "Service", "keel-api")["spec"]
    assert service["selector"].items() <= labels.items()
    ingress = one(manifests, "Ingress", "keel-api")["spec"]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "keel-api"


def test_api_probes_are_distinct_and_hit_the_right_endpoints(
    manifests: tuple[Manifest, ...],
) -> None:
    (container,) = one(manifests, "Deployment", "keel-api")["spec"]["template"]["spec"][
        "containers"
    ]
    startup, readiness, liveness = (
        container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    assert startup["httpGet"]["path"] == "/livez"
    assert liveness["httpGet"]["path"] == "/livez"  # never the dependencies
    assert readiness["httpGet"]["path"] == "/readyz"
    assert startup != liveness
    # Readiness reacts faster than liveness restarts.
    fail_ready = readiness["periodSeconds"] * readiness["failureThreshold"]
    assert fail_ready < liveness["periodSeconds"] * liveness["failureThreshold"]


def test_api_grace_period_covers_prestop_plus_graceful_timeout_plus_5(
    manifests: tuple[Manifest, ...],
) -> None:
    spec = one(manifests, "Deployment", "keel-api")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5, "endpoints need time to drop the pod before SIGTERM"
    env = config(manifests)
    settings = gunicorn_settings(DRAIN_TIMEOUT=env["DRAIN_TIMEOUT"], KEEPALIVE=env["KEEPALIVE"])
    graceful = settings["graceful_timeout"]
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + graceful + 5
    assert settings["keepalive"] <= drain_timeout_for(graceful)


def test_api_is_scraped(manifests: tuple[Manifest, ...]) -> None:
    template = one(manifests, "Deployment", "keel-api")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    monitor = one(manifests, "PodMonitor", "keel")["spec"]
    ports = {e["port"] for e in monitor["podMetricsEndpoints"]}
    assert "http" in ports
    assert ports == {"http", "metrics"}  # feature: worker
    assert monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


# --- Kubernetes: worker and migrations ------------------------------------------------------------


# feature: worker
def test_worker_probes_grace_hpa_pdb(manifests: tuple[Manifest, ...]) -> None:
    worker = one(manifests, "Deployment", "keel-worker")
    spec = worker["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["keel", "worker"]
    assert container["livenessProbe"]["exec"]["command"] == ["keel", "worker", "--check"]
    assert container["startupProbe"]["exec"]["command"] == ["keel", "worker", "--check"]
    job_wait = int(config(manifests)["ARQ_JOB_COMPLETION_WAIT"])
    assert spec["terminationGracePeriodSeconds"] >= job_wait + 5
    hpa = one(manifests, "HorizontalPodAutoscaler", "keel-worker")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "keel-worker"
    pdb = one(manifests, "PodDisruptionBudget", "keel-worker")["spec"]
    assert pdb["maxUnavailable"] >= 1
    assert worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"


# end feature: worker
def test_migrations_run_as_a_bounded_job(manifests: tuple[Manifest, ...]) -> None:
    job = one(manifests, "Job", "keel-migrate")["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"] == ["keel", "migrate"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["backoffLimit"] <= 3
    assert job["activeDeadlineSeconds"] > 0


# --- gunicorn: the timeout budget ----------------------------------------------------------------


def test_gunicorn_budget_defaults() -> None:
    settings = gunicorn_settings()
    assert settings["worker_class"] == "keel.gunicorn_worker.KeelUvicornWorker"
    drain = drain_timeout_for(settings["graceful_timeout"])
    assert drain == settings["drain_timeout"]
    assert settings["graceful_timeout"] >= drain + 5
    assert settings["keepalive"] <= drain
    assert settings["timeout"] > 0
    assert settings["max_requests"] > 0
    assert settings["max_requests_jitter"] > 0
    assert settings["control_socket_disable"] is True
    assert settings["accesslog"] is None
    assert settings["forwarded_allow_ips"] == ""
    assert settings["preload_app"] is False


def test_gunicorn_trusts_forwarded_headers_only_from_the_configured_proxies() -> None:
    assert gunicorn_settings()["forwarded_allow_ips"] == ""
    own = gunicorn_settings(FORWARDED_ALLOW_IPS="10.0.0.0/8")
    assert own["forwarded_allow_ips"] == "10.0.0.0/8"
    # feature: ratelimit
    # The rate limiter's proxies are uvicorn's too, unless FORWARDED_ALLOW_IPS says otherwise.
    trusted = gunicorn_settings(RATE_LIMIT_TRUSTED_PROXIES="10.0.0.0/8,192.0.2.7")
    assert trusted["forwarded_allow_ips"] == "10.0.0.0/8,192.0.2.7"
    own = gunicorn_settings(RATE_LIMIT_TRUSTED_PROXIES="10.0.0.0/8", FORWARDED_ALLOW_IPS="")
    assert own["forwarded_allow_ips"] == ""
    # end feature: ratelimit


def test_gunicorn_settings_follow_the_environment() -> None:
    settings = gunicorn_settings(
        WEB_CONCURRENCY="3", DRAIN_TIMEOUT="7", BIND="127.0.0.1:9", KEEPALIVE="4"
    )
    assert settings["workers"] == 3
    assert settings["graceful_timeout"] == 7 + SHUTDOWN_RESERVE_SECONDS
    assert settings["bind"] == "127.0.0.1:9"
    assert settings["keepalive"] == 4


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # v1
        (
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            2.0,
        ),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "junk\n", "cpu/cpu.cfs_period_us": "0\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_quota_reads_v2_and_v1(
    tmp_path: Path, files: dict[str, str], cores: float | None
) -> None:
    quota = gunicorn_settings()["cgroup_cpu_quota"]
    assert quota(_cgroup(tmp_path, files)) == cores


def test_default_workers_follow_a_cgroup_v1_quota(tmp_path: Path) -> None:
    usable_cpus = gunicorn_settings()["usable_cpus"]
    root = _cgroup(
        tmp_path, {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    )
    assert usable_cpus(root) == 1  # half a core still gets one worker
    unlimited = _cgroup(tmp_path / "none", {"cpu/cpu.cfs_quota_us": "-1\n"})
    assert usable_cpus(unlimited) == len(os.sched_getaffinity(0))


class _Cfg:
    def __init__(self, graceful_timeout: int, keepalive: int) -> None:
        self.graceful_timeout = graceful_timeout
        self.keepalive = keepalive


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: object) -> None:
        self.warnings.append(message % args)


def test_worker_refuses_a_graceful_timeout_that_leaves_no_drain() -> None:
    with pytest.raises(RuntimeError, match="graceful_timeout=5s"):
        KeelUvicornWorker.check_config(_Cfg(graceful_timeout=5, keepalive=2), _Log())
    log = _Log()
    KeelUvicornWorker.check_config(_Cfg(graceful_timeout=8, keepalive=5), log)
    assert log.warnings, "keepalive 5 > drain 3 must warn"
    log = _Log()
    KeelUvicornWorker.check_config(_Cfg(graceful_timeout=30, keepalive=5), log)
    assert not log.warnings


def test_connection_budget_warning_names_the_numbers() -> None:
    warn = gunicorn_settings()["connection_budget_warning"]
    assert warn(workers=4, pool_size=16, max_overflow=0, max_connections=100, reserved=10) is None
    message = warn(workers=8, pool_size=16, max_overflow=0, max_connections=100, reserved=13)
    assert message is not None
    assert "workers=8 x (pool_size=16 + max_overflow=0) = 128" in message
    assert "max_connections=100 - reserved=13 = 87" in message


# --- compose ---------------------------------------------------------------------------------


COMPOSE = runpy.run_path(str(REPO / "scripts" / "compose_config.py"))
# The services running the project's own code, and those of them that keep running.
LONG_RUNNING = (
    "api",
    "worker",  # feature: worker
)
KEEL_SERVICES = (*LONG_RUNNING, "migrate")


@functools.cache
def compose(variant: str) -> Manifest:
    """docker-compose.yml ("dev"), or it with compose.prod.yml on top ("prod"), merged."""
    document: Manifest = COMPOSE["variant"](variant)
    return document


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_compose_services_order_health_and_hardening(variant: str) -> None:
    services = compose(variant)["services"]
    assert {*KEEL_SERVICES, "postgres", "redis", "prometheus"} <= set(services)
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in (*LONG_RUNNING, "postgres", "redis"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["command"] == ["keel", "migrate"]
    # feature: worker
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "keel", "worker", "--check"]
    job_wait = int(services["worker"]["environment"]["ARQ_JOB_COMPLETION_WAIT"])
    assert seconds(services["worker"]["stop_grace_period"]) >= job_wait + 5
    # end feature: worker
    for name in KEEL_SERVICES:
        assert services[name]["read_only"] is True, name
        assert any(t.startswith("/tmp:") for t in services[name]["tmpfs"]), name  # noqa: S108
        assert services[name]["cap_drop"] == ["ALL"], name
    assert "tracing" in services["jaeger"]["profiles"]  # feature: tracing


# feature: files
@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_compose_runs_s3_storage_the_app_reaches_and_signs_for(variant: str) -> None:
    services = compose(variant)["services"]
    s3 = services["s3"]
    assert re.fullmatch(r"chrislusf/seaweedfs:\d+\.\d+", s3["image"]), s3["image"]
    assert "-master.telemetry=false" in s3["command"]
    assert "healthcheck" in s3
    assert s3["volumes"] == ["s3-data:/data"]
    (published,) = s3["ports"]
    host_ip, host_port, container_port = published.split(":")
    for name in LONG_RUNNING:
        assert services[name]["depends_on"]["s3"]["condition"] == "service_healthy", name
    for name in KEEL_SERVICES:
        environment = services[name]["environment"]
        assert environment["S3_ENDPOINT_URL"] == f"http://s3:{container_port}", name
        public = environment["S3_PUBLIC_ENDPOINT_URL"]
        assert public == f"http://{host_ip}:{host_port}", name
        # The server's one identity is the app's: both files name the same keys.
        assert environment["S3_ACCESS_KEY_ID"] == s3["environment"]["AWS_ACCESS_KEY_ID"], name
        secret = s3["environment"]["AWS_SECRET_ACCESS_KEY"]
        assert environment["S3_SECRET_ACCESS_KEY"] == secret, name
        assert environment["S3_CREATE_BUCKET"] == "true", name  # the s3 service starts empty
        assert environment["S3_BUCKET"], name


# end feature: files


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_compose_grafana_provisions_the_repository_dashboard(variant: str) -> None:
    """The mounts land where the provisioning files look, and the datasource is compose's."""
    grafana = compose(variant)["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = REPO / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "keel.yml").read_text())["providers"]
    assert [provider["options"]["path"] for provider in providers] == [
        mounts["./grafana/dashboards"]
    ]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == mounts["./grafana/dashboards"] + "/overview.json"
    assert (REPO / "grafana" / "dashboards" / "overview.json").is_file()
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    port = compose(variant)["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert [source["url"] for source in sources["datasources"]] == [f"http://prometheus:{port}"]


def test_compose_prod_drain_fits_the_stop_grace_period() -> None:
    api = compose("prod")["services"]["api"]
    graceful = gunicorn_settings(DRAIN_TIMEOUT=api["environment"]["DRAIN_TIMEOUT"])
    assert seconds(api["stop_grace_period"]) >= graceful["graceful_timeout"] + 5


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_every_published_port_binds_loopback(variant: str) -> None:
    # Dev signs tokens with a published key; the stack is a laptop's, not the network's.
    published = 0
    for name, service in compose(variant)["services"].items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):  # the long syntax
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert str(port).startswith("127.0.0.1:"), (name, port)
                assert str(port).count(":") == 2, (name, port)
    assert published >= 2


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_exec_healthchecks_have_no_space_in_an_argument(variant: str) -> None:
    # podman's Docker API splits exec-form arguments on spaces; CMD-SHELL takes one string.
    for name, service in compose(variant)["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test[0] == "CMD":
            assert not any(" " in argument for argument in test), (name, test)
    api = compose(variant)["services"]["api"]["healthcheck"]["test"]
    assert api == ["CMD", "keel", "healthcheck", "--path=/readyz"]


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_migrate_does_not_inherit_the_api_healthcheck(variant: str) -> None:
    assert compose(variant)["services"]["migrate"]["healthcheck"] == {"disable": True}


def test_compose_dev_is_the_make_dev_loop() -> None:
    services = compose("dev")["services"]
    assert services["api"]["command"][:2] == ["keel", "serve"]
    assert "--reload" in services["api"]["command"]
    assert services["worker"]["command"] == ["keel", "worker", "--reload"]  # feature: worker
    for name in KEEL_SERVICES:
        environment = services[name]["environment"]
        assert environment["ENVIRONMENT"] == "development", name
        # Development mode runs on its default key: nothing to export first.
        assert "SECRET_KEY" not in environment, name
        assert environment["PYTHONPATH"] == "/app/src", name
        volumes = services[name]["volumes"]
        assert {"./src:/app/src:ro", "./migrations:/app/migrations:ro"} <= set(volumes), name
        # The bytecode of the read-only source is cached where the container may write.
        assert environment["PYTHONDONTWRITEBYTECODE"] == "", name
        cache = environment["PYTHONPYCACHEPREFIX"]
        assert any(cache.startswith(mount.split(":")[0]) for mount in services[name]["tmpfs"])


def test_compose_prod_runs_the_image_as_built() -> None:
    services = compose("prod")["services"]
    assert "command" not in services["api"]  # the image's CMD: gunicorn
    assert services["worker"]["command"] == ["keel", "worker"]  # feature: worker
    for name in KEEL_SERVICES:
        environment = services[name]["environment"]
        assert environment["ENVIRONMENT"] == "production", name
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?"), name
        assert "PYTHONPATH" not in environment, name
        assert "PYTHONPYCACHEPREFIX" not in environment, name  # the image's compiled bytecode
        assert environment["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus", name  # noqa: S108
        assert "volumes" not in services[name], name


def test_compose_merge_resets_overrides_and_replaces_commands() -> None:
    merge = COMPOSE["merge"]
    base = {"command": ["a", "b"], "env": {"A": "1", "B": "2"}, "ports": ["1"], "volumes": ["v"]}
    top = {
        "command": ["c"],
        "env": COMPOSE["Override"]({"A": "3"}),
        "ports": ["2"],
        "volumes": COMPOSE["Reset"](),
    }
    assert merge(base, top) == {"command": ["c"], "env": {"A": "3"}, "ports": ["1", "2"]}


def test_prometheus_scrapes_api_and_worker() -> None:
    config_doc = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config_doc["scrape_configs"]
    }
    assert targets["keel-api"] == ["api:8000"]
    assert targets["keel-worker"] == ["worker:9100"]  # feature: worker


def test_every_alert_has_a_unit_test_and_a_runbook() -> None:
    rules = yaml.safe_load((REPO / "prometheus" / "rules" / "keel.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert len(alerts) >= 4
    assert len(alerts) >= 7  # feature: worker
    assert {"KeelRealtimeFanoutLag", "KeelRealtimeAtCapacity"} <= alerts  # feature: realtime
    tests = yaml.safe_load((REPO / "prometheus" / "tests" / "keel.rules.test.yml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert alerts == tested
    runbook = (REPO / "docs" / "deployment.md").read_text()
    headings = set(re.findall(r"^#### (\w+)$", runbook, flags=re.MULTILINE))
    assert alerts <= headings, alerts - headings


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_policy() -> None:
    text = (REPO / "Dockerfile").read_text()
    # The newest Python that CI tests (pyproject's classifiers), at a pinned patch version.
    newest = max(CLAIMED_PYTHONS, key=lambda version: tuple(map(int, version.split("."))))
    pattern = rf"^ARG PYTHON_IMAGE=python:{re.escape(newest)}\.\d+-slim-(bookworm|trixie)$"
    assert re.search(pattern, text, re.MULTILINE), newest
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2
    build, runtime = stages
    assert 'pip install --no-cache-dir "uv==' in build
    assert "--require-hashes requirements.lock" in build
    assert "--no-deps ." in build
    assert "UV_COMPILE_BYTECODE=1" in build
    assert "uv " not in runtime.replace("useradd", "")
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.MULTILINE)
    assert user
    assert int(user.group(1)) >= 10000
    healthcheck = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", runtime, re.MULTILINE)
    assert healthcheck, "no exec-form HEALTHCHECK in the runtime stage"
    assert json.loads(healthcheck.group(1)) == ["keel", "healthcheck", "--path=/livez"]
    # No BuildKit-only feature is used; the syntax line only adds a registry pull to every build.
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE | re.IGNORECASE)
    cmd = re.search(r"^CMD (\[.*\])$", runtime, re.MULTILINE)
    assert cmd
    assert cmd.group(1).startswith('["gunicorn", "--config", "/app/gunicorn.conf.py"')
    assert not re.search(r"https?://", text)
