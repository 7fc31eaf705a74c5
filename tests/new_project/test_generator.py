"""The project generator (scripts/new) without formatting or git: names, feature blocks,
answers, migrations, and that what it writes imports nothing it removed.

`make new-check` (.ci/run) proves the generated projects whole: their own lint, types, tests,
deployment checks and `make dev`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scripts.new import __main__ as cli
from scripts.new.answers import ANSWERS_FILE, read_answers_file, resolve
from scripts.new.artifacts import RATE_LIMIT_DESCRIPTION, without_operations, without_panels
from scripts.new.features import BY_NAME, FEATURES, TEMPLATE_ONLY, missing_requirements
from scripts.new.locks import LOCK_FILES, dependency_arrays, needs_lock
from scripts.new.migrations import rechain_migrations
from scripts.new.naming import ProjectName, rename
from scripts.new.tree import strip_blocks

from keel.ratelimit import too_many_requests_response

ROOT = Path(__file__).resolve().parents[2]
NAME = ProjectName.parse("acme-orders")
MINIMAL = [
    "--no-items",
    "--no-webhooks",
    "--no-files",
    "--no-realtime",
    "--no-worker",
    "--no-tracing",
    "--no-ratelimit",
]
# The worker with only its housekeeping jobs; its dependencies are the template's.
WORKER_ALONE = ["--no-items", "--no-webhooks", "--no-files", "--no-realtime"]


@pytest.mark.parametrize(
    ("template", "renamed"),
    [
        ("from keel.api import deps", "from acme_orders.api import deps"),
        ("import keel", "import acme_orders"),
        ("src/keel/items/", "src/acme_orders/items/"),
        ("python -m keel_dev", "python -m acme_orders_dev"),
        ('["keel", "worker", "--check"]', '["acme-orders", "worker", "--check"]'),
        (".venv/bin/keel migrate", ".venv/bin/acme-orders migrate"),
        ("name: keel-api", "name: acme-orders-api"),
        ("app.kubernetes.io/name: keel", "app.kubernetes.io/name: acme-orders"),
        ("record: keel:http_requests:rate5m", "record: acme_orders:http_requests:rate5m"),
        ('prefix=f"keel:cache"', 'prefix=f"acme-orders:cache"'),
        ("postgresql://keel:pw@db:5432/keel", "postgresql://acme_orders:pw@db:5432/acme_orders"),
        ("POSTGRES_USER: keel", "POSTGRES_USER: acme_orders"),
        ("alert: KeelWorkerDown", "alert: AcmeOrdersWorkerDown"),
        ("#keelworkerdown", "#acmeordersworkerdown"),
        ("Keel runs on", "Acme Orders runs on"),
        ("KEEL_DEBUG", "ACME_ORDERS_DEBUG"),
        ("image: keel:local", "image: acme-orders:local"),
        ("http://rebind.keel.test/hook", "http://rebind.acme-orders.test/hook"),
        ("async def keel(settings)", "async def acme_orders(settings)"),
    ],
)
def test_each_spelling_becomes_the_same_spelling_of_the_new_name(
    template: str, renamed: str
) -> None:
    assert rename(template, NAME) == renamed


@pytest.mark.parametrize("name", ["", "Acme Orders!", "1st", "keelhaul", "my-keel"])
def test_unusable_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        ProjectName.parse(name)


def test_blocks_and_lines_of_a_disabled_feature_go_and_markers_never_stay() -> None:
    text = (
        "from x import (\n    a,\n    items,  # feature: items\n)\n"
        "# feature: worker\nrun_worker()\n# end feature: worker\n"
        "<!-- feature: template -->\nbench\n<!-- end feature: template -->\nkept\n"
    )
    assert (
        strip_blocks(text, frozenset({"items"})) == "from x import (\n    a,\n    items,\n)\nkept\n"
    )
    assert (
        strip_blocks(text, frozenset({"worker"}))
        == "from x import (\n    a,\n)\nrun_worker()\nkept\n"
    )


def test_inline_spans_of_a_disabled_feature_go_and_their_markers_never_stay() -> None:
    text = (
        "serves the API <!-- feature: worker -->next to one\n"
        "worker <!-- end feature: worker -->until Ctrl-C.\n"
    )
    assert strip_blocks(text, frozenset()) == "serves the API until Ctrl-C.\n"
    assert strip_blocks(text, frozenset({"worker"})) == (
        "serves the API next to one\nworker until Ctrl-C.\n"
    )


def test_a_marker_naming_no_feature_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown feature"):
        strip_blocks("x = 1  # feature: itmes\n", frozenset())


def test_answers_come_from_flags_then_the_file_then_defaults(tmp_path: Path) -> None:
    answers = tmp_path / ANSWERS_FILE
    answers.write_text(
        'name = "acme-orders"\n[features]\nwebhooks = false\nfiles = false\n'
        "realtime = false\nworker = false\n"
    )
    chosen = resolve(None, {"items": None}, read_answers_file(answers), ask=None)
    assert chosen.name == "acme-orders"
    assert chosen.enabled == {"items", "ratelimit", "tracing"}
    not_items = resolve(None, {"items": False}, read_answers_file(answers), None)
    assert not_items.enabled == {"ratelimit", "tracing"}


def test_an_answers_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    answers = tmp_path / ANSWERS_FILE
    answers.write_text('name = "acme-orders"\n[features]\ntracing_v2 = true\n')
    with pytest.raises(ValueError, match=r"unknown answers: features\.tracing_v2"):
        read_answers_file(answers)


def test_prompts_ask_each_feature_in_a_terminal() -> None:
    replies = iter(["acme-orders", "", "n", "n", "n", "n", "n", "n"])
    chosen = resolve(None, {}, {}, ask=lambda question: next(replies))
    assert chosen.enabled == {"items"}


def test_contradicting_features_are_refused() -> None:
    assert missing_requirements(frozenset({"webhooks", "worker"})) == [
        "webhooks needs items: turn items on or webhooks off"
    ]
    with pytest.raises(ValueError, match="webhooks needs worker"):
        resolve("acme", {"worker": False}, {}, None)
    assert missing_requirements(frozenset({"worker"})) == []


def test_migrations_are_chained_again_after_one_is_removed(tmp_path: Path) -> None:
    for number, down in (("0001", None), ("0003", "0002")):
        (tmp_path / f"{number}_x.py").write_text(
            f'revision: str = "{number}"\ndown_revision: str | None = {down!r}\n'
        )
    rechain_migrations(tmp_path)
    assert 'down_revision: str | None = "0001"' in (tmp_path / "0003_x.py").read_text()


def test_dashboard_panels_and_snapshot_operations_of_disabled_features_go() -> None:
    dashboard = json.loads(
        without_panels(
            (ROOT / "grafana/dashboards/overview.json").read_text(), frozenset({"items"})
        )
    )
    queries = json.dumps(dashboard["panels"])
    assert "http_requests_total" in queries
    assert "keel_arq_" not in queries
    assert "keel_webhook_" not in queries
    snapshot = (ROOT / "tests/api/v1/openapi.snapshot.json").read_text()
    document = json.loads(without_operations(snapshot, frozenset()))
    assert not [path for path in document["paths"] if path.startswith("/api/v1/items")]
    assert "ItemRead" not in document["components"]["schemas"]
    assert "UserRead" in document["components"]["schemas"]


def test_without_the_rate_limiter_only_the_routes_own_429s_stay_documented() -> None:
    assert too_many_requests_response()["description"] == RATE_LIMIT_DESCRIPTION
    snapshot = (ROOT / "tests/api/v1/openapi.snapshot.json").read_text()
    everything = frozenset(feature.name for feature in FEATURES)
    limited = json.loads(without_operations(snapshot, everything))
    unlimited = json.loads(without_operations(snapshot, everything - {"ratelimit"}))

    def answers_429(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            f"{method} {path}": operation["responses"]["429"]
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if "429" in operation.get("responses", {})
        }

    assert len(answers_429(limited)) > 20
    # Login and the password change answer 429 for the per-account backoff, limiter or not.
    kept = answers_429(unlimited)
    assert set(kept) == {"post /api/v1/auth/token", "post /api/v1/users/me/password"}
    assert all(list(answer["headers"]) == ["Retry-After"] for answer in kept.values())
    assert "RateLimit-Limit" in answers_429(limited)["post /api/v1/auth/token"]["headers"]


# The shapes a project can take today (tracing aside): everything, the example domain without
# webhooks and the worker (their blocks inside the domain's own files go), the worker alone,
# minimal (no rate limiter either).
@pytest.fixture(
    scope="module",
    params=[
        [],
        ["--no-webhooks", "--no-files", "--no-realtime", "--no-worker"],
        WORKER_ALONE,
        MINIMAL,
    ],
    ids=["everything", "no-worker", "worker-alone", "minimal"],
)
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("generated") / "acme-orders"
    argv = ["acme-orders", "--output", str(target), "--no-input", "--no-git", "--no-format"]
    # The lock files stay as copied here; resolving them is test_lock_files_are_resolved_...
    assert cli.main([*argv, "--no-lock", *request.param]) == 0
    return target


def test_the_old_name_is_left_only_in_the_generated_from_note(generated: Path) -> None:
    found = [
        f"{path.relative_to(generated)}: {line}"
        for path in generated.rglob("*")
        if path.is_file() and ".venv" not in path.parts
        for line in path.read_text(errors="replace").splitlines()
        if re.search("keel", line, re.IGNORECASE)
    ]
    assert len(found) == 1, found
    assert found[0].startswith("README.md: > Generated from Keel")
    assert not [path for path in generated.rglob("*") if "keel" in path.name.lower()]


def test_no_marker_and_no_template_only_file_is_left(generated: Path) -> None:
    markers = [
        path for path in generated.rglob("*") if path.is_file() and "feature: " in path.read_text()
    ]
    assert markers == []
    assert not (generated / "bench").exists()
    assert not (generated / "scripts/new").exists()


def _template_only_references() -> re.Pattern[str]:
    """Any way a text names what only the template has: a path it owns (`bench/edge.py`,
    `scripts/new`, `docs/performance.md`, `performance.md` from inside docs/, the module form
    `python -m bench.edge`) or a make target of the Makefile's template block (`make new-check`)."""
    spellings = []
    for owned in TEMPLATE_ONLY.paths:
        path = owned.rstrip("/")
        module = path.removesuffix(".py").replace("/", ".")
        if owned.endswith("/"):
            # A folder: `bench/...` and `bench.edge`; a longer path also alone (`scripts/new`).
            spellings += [re.escape(f"{path}/"), rf"{re.escape(module)}\.\w"]
            if "/" in path:
                spellings += [rf"{re.escape(path)}\b", rf"{re.escape(module)}\b"]
        else:
            spellings += [rf"{re.escape(path)}\b", rf"(?<![\w/-]){re.escape(Path(path).name)}\b"]
            if path.endswith(".py"):
                spellings.append(rf"{re.escape(module)}\b")
    makefile = (ROOT / "Makefile").read_text()

    def targets(enabled: frozenset[str]) -> set[str]:
        return set(re.findall(r"^([\w-]+):", strip_blocks(makefile, enabled), re.MULTILINE))

    template_targets = targets(frozenset({TEMPLATE_ONLY.name})) - targets(frozenset())
    spellings += [rf"\bmake {re.escape(target)}(?![\w-])" for target in sorted(template_targets)]
    return re.compile(rf"(?<![\w.-])(?:{'|'.join(spellings)})")


def test_nothing_refers_to_what_only_the_template_has(generated: Path) -> None:
    """The benchmarks, the generator and their docs are Keel's: a project's comments, docs and
    scripts do not send its reader to them. The one exception is the README's note that it was
    generated, which names docs/new-project.md in Keel on purpose."""
    pattern = _template_only_references()
    found = [
        f"{path.relative_to(generated)}:{number}: {line.strip()}"
        for path in sorted(generated.rglob("*"))
        if path.is_file() and path.name not in LOCK_FILES and ".venv" not in path.parts
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if pattern.search(line)
        and not (path.name == "README.md" and line.startswith("> Generated from Keel"))
    ]
    assert found == []


def test_the_template_only_references_are_found_in_every_spelling() -> None:
    pattern = _template_only_references()
    for text in (
        "(bench/ratelimit.py)",
        "`python -m bench.collector`",
        "docs/performance.md has the measurement",
        "[the figures](performance.md)",
        "the project generator (scripts/new) reads it",
        "run tests/test_any_api_shape.py",
        "stage make new-check",
        "`make bench`",
    ):
        assert pattern.search(text), text
    for text in ("the benchmark", "a bench.", "docs/edge.md", "make newer", "new-domain"):
        assert not pattern.search(text), text


def test_every_first_party_import_resolves(generated: Path) -> None:
    """Removed modules are not imported, and no name is imported from a module that lost it."""
    modules = _modules(generated)
    dangling = [
        f"{where}: {imported}"
        for where, path in modules.items()
        for imported in _first_party_imports(path, modules)
    ]
    assert dangling == []


def test_disabled_features_leave_nothing_of_theirs(generated: Path) -> None:
    answers = read_answers_file(generated / ANSWERS_FILE)
    features = answers["features"]
    assert isinstance(features, dict)
    skipped_always = {*LOCK_FILES, ANSWERS_FILE}
    for feature in FEATURES:
        owned = [rename(path, NAME) for path in feature.paths]
        present = [path for path in owned if (generated / path).exists()]
        assert present == ([] if not features[feature.name] else present), feature.name
    if features["worker"] and not features["webhooks"]:
        # The worker's code, tests and docs.
        tops = [generated / rename(path, NAME) for path in BY_NAME["worker"].paths]
        files = [path for top in tops for path in (top.rglob("*") if top.is_dir() else [top])]
        assert _mentions(generated, files, r"webhook|outbox|deliver(y|ies)") == []
    if not features["worker"]:
        settings = (generated / "src/acme_orders/settings.py").read_text()
        assert "arq_" not in settings
        assert "worker" not in (generated / "k8s/base/kustomization.yaml").read_text()
        assert "worker:" not in (generated / "docker-compose.yml").read_text()
    if not features["tracing"]:
        # FastAPI itself requires opentelemetry-api: the lock files keep it, pinned for FastAPI.
        everything_but_locks = [p for p in generated.rglob("*") if p.name not in LOCK_FILES]
        assert _mentions(generated, everything_but_locks, "opentelemetry|otel") == []
        assert "jaeger" not in (generated / "docker-compose.yml").read_text()
        assert "4318" not in (generated / "k8s/base/networkpolicy.yaml").read_text()
    if not features["files"]:
        skipped = {*LOCK_FILES, ANSWERS_FILE, "README.md"}
        files = [path for path in generated.rglob("*") if path.name not in skipped]
        assert (
            _mentions(generated, files, r"s3_endpoint|aiobotocore|seaweed|object_deletions") == []
        )
    if not features["realtime"]:
        # The README's list of what was left out names it, with its summary, on purpose.
        files = [path for path in generated.rglob("*") if path.name not in skipped_always]
        found = _mentions(
            generated, files, r"realtime|/api/v1/events|websockets(?:-sansio|[>=])|ws_per_message"
        )
        assert [line for line in found if ", left out: " not in line] == []
    if not features["ratelimit"]:
        # The answers file and the README's list of what was left out name it, on purpose.
        skipped = {*LOCK_FILES, ANSWERS_FILE, "README.md"}
        files = [path for path in generated.rglob("*") if path.name not in skipped]
        assert _mentions(generated, files, "ratelimit|rate_limit|slowapi") == []


def _mentions(generated: Path, files: list[Path], pattern: str) -> list[str]:
    """`path: line` for each line of `files` matching `pattern`, in any case."""
    return [
        f"{path.relative_to(generated)}: {line.strip()}"
        for path in files
        if path.is_file()
        for line in path.read_text(errors="replace").splitlines()
        if re.search(pattern, line, re.IGNORECASE)
    ]


# What the prose of a project without the feature must not mention (settings, commands, routes).
PROSE_TELLS = {
    "items": ("GET /api/v1/items", "make domain"),
    "webhooks": ("WEBHOOK_", "/api/v1/webhooks", "webhook endpoint"),
    "worker": ("ARQ_QUEUE_NAME", "WORKER_METRICS_PORT", "acme-orders worker", "ARQ worker"),
    "ratelimit": ("RATE_LIMIT_", "ratelimit", "slowapi", "rate limiter"),
    "files": ("S3_ENDPOINT_URL", "FILE_MAX_SIZE", "/attachments", "SeaweedFS", "aiobotocore"),
    "realtime": (
        "REALTIME_",
        "/api/v1/events",
        "realtime.md",
        "WebSocket",
        "websockets",
        "Server-Sent Events",
        "EventSource",
    ),
}


def test_the_docs_describe_no_disabled_feature(generated: Path) -> None:
    features = read_answers_file(generated / ANSWERS_FILE)["features"]
    assert isinstance(features, dict)
    # The list at the top names what was left out, with each feature's summary.
    readme = (generated / "README.md").read_text().splitlines()
    texts = {"README.md": "\n".join(line for line in readme if ", left out: " not in line)}
    texts |= {f"docs/{doc.name}": doc.read_text() for doc in (generated / "docs").glob("*.md")}
    found = [
        f"{where}: {tell!r} ({name} is off)"
        for name, tells in PROSE_TELLS.items()
        if not features[name]
        for where, text in texts.items()
        for tell in tells
        if tell in text
    ]
    assert found == []


# What the code of a project without the feature must not mention: its docstrings and comments
# (and names) in src/ and tests/. Patterns, as "worker" alone is also gunicorn's and xdist's.
CODE_TELLS = {
    "items": (
        r"/api/v1/items",
        r"\bItem(?:Read|Create|Update|Page)\b",
        r"\bITEM_[A-Z]+",
        r"\bacme_orders\.items\b",
        r"\btests/items\b",
        r"\bitem\.(?:created|deleted|updated)\b",
    ),
    "webhooks": (r"(?i)webhook", r"(?i)\boutbox\b"),
    "worker": (
        r"(?i)\barq",
        r"(?i)\benqueue",
        r"\bjobs API\b",
        r"\bAPI (?:and|or) (?:the |a )?worker\b",
        r"\b(?:as for|and) (?:the|a) worker\b",
        r"\bworker start-up\b",
        r"\bhousekeeping\b",
        r"\bJobMetrics\b",
    ),
    "tracing": (r"OpenTelemetry", r"(?i)jaeger", r"\bOTLP\b", r"\bspans?\b", r"\btrace ids?\b"),
    "files": (
        r"\bObjectStore\b",
        r"(?i)\bs3_",
        r"(?i)seaweed",
        r"(?i)object storage",
        r"\.attachments\b",
        r"\bFILE_[A-Z_]+",
    ),
    "realtime": (
        r"(?i)realtime",
        r"(?i)real-time",
        r"/api/v1/events",
        r"\bEvent(?:Hub|Relay|sGateway)\b",
        r"\bevents stream\b",
        r"\bWebSockets\b",
        r"\bSSE\b",
        r"websockets-sansio|ws_per_message_deflate",
    ),
}


def test_the_code_describes_no_disabled_feature(generated: Path) -> None:
    features = read_answers_file(generated / ANSWERS_FILE)["features"]
    assert isinstance(features, dict)
    found = [
        f"{path.relative_to(generated)}:{number}: {tell!r} ({name} is off)"
        for base in ("src", "tests")
        for path in sorted((generated / base).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for name, tells in CODE_TELLS.items()
        if not features[name]
        for tell in tells
        if re.search(tell, line)
    ]
    assert found == []


def test_the_dependencies_of_features_left_out_leave_pyproject(generated: Path) -> None:
    features = read_answers_file(generated / ANSWERS_FILE)["features"]
    assert isinstance(features, dict)
    runtime = dependency_arrays((generated / "pyproject.toml").read_text())["dependencies"]
    assert isinstance(runtime, list)
    names = {re.split(r"[<>=\[; ]", requirement)[0] for requirement in runtime}
    assert ("arq" in names) == features["worker"]
    assert (
        bool({name for name in names if name.startswith("opentelemetry")}) == (features["tracing"])
    )
    assert ("slowapi" in names) == ("limits" in names) == features["ratelimit"]
    assert ("websockets" in names) == features["realtime"]


def test_lock_files_are_resolved_again_only_when_the_dependencies_change(tmp_path: Path) -> None:
    template = (ROOT / "pyproject.toml").read_text()
    everything = frozenset(feature.name for feature in FEATURES)
    for name, enabled, changed in (
        ("all", everything, False),
        ("no-items", everything - {"items"}, False),
        ("no-webhooks", everything - {"webhooks"}, False),
        ("no-files", everything - {"files"}, True),
        ("no-realtime", everything - {"realtime"}, True),
        ("no-tracing", everything - {"tracing"}, True),
        ("no-ratelimit", everything - {"ratelimit"}, True),
        ("no-worker", everything - {"webhooks", "files", "realtime", "worker"}, True),
    ):
        project = tmp_path / name
        project.mkdir()
        (project / "pyproject.toml").write_text(rename(strip_blocks(template, enabled), NAME))
        assert needs_lock(ROOT, project) == changed, name
    # Comments, order of tables and the project's name are not dependencies.
    assert dependency_arrays('[project]\nname = "a"\ndependencies = ["x>=1"]  # c\n') == (
        dependency_arrays('[project]\ndependencies = [\n    "x>=1",\n]\nname = "b"\n')
    )


def test_lock_files_are_the_templates_when_the_dependencies_are(generated: Path) -> None:
    if needs_lock(ROOT, generated):
        pytest.skip("the dependencies differ from the template's")
    for lock in LOCK_FILES:
        assert (generated / lock).read_text() == rename((ROOT / lock).read_text(), NAME), lock


def test_lock_files_are_resolved_when_tracing_and_the_worker_are_off(tmp_path: Path) -> None:
    """The real thing, once: the project's `make lock` run by the generator, then its own
    `make lock-check` (uv from the project's .tools; ~25 s)."""
    target = tmp_path / "acme-orders"
    options = ["--no-webhooks", "--no-files", "--no-realtime", "--no-worker", "--no-tracing"]
    argv = ["acme-orders", "--output", str(target), "--no-input", "--no-git", "--no-format"]
    assert cli.main([*argv, *options]) == 0
    checked = subprocess.run(
        ["make", "-C", str(target), "lock-check"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for lock in LOCK_FILES:
        pinned = (target / lock).read_text()
        assert "\narq==" not in pinned, lock
        assert "opentelemetry-sdk==" not in pinned, lock
        assert "\nwebsockets==" not in pinned, lock
        assert (target / lock).read_text() != rename((ROOT / lock).read_text(), NAME), lock


@pytest.mark.slow
def test_a_worker_without_webhooks_passes_its_own_checks(tmp_path: Path) -> None:
    """A project whose worker runs only the housekeeping: generated (formatted, so with its
    venv), then its own `make lint typecheck` and its worker tests against embedded servers of
    its own (~65 s)."""
    target = tmp_path / "acme-orders"
    argv = ["acme-orders", "--output", str(target), "--no-input", "--no-git"]
    assert cli.main([*argv, *WORKER_ALONE]) == 0
    # Its own servers: a renamed project claims Redis databases under its own name, so it must
    # not share a server with this suite's.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TEST_DATABASE_URL", "TEST_REDIS_URL") and not key.startswith("PYTEST_")
    }

    def run(*command: str) -> str:
        done = subprocess.run(
            command, cwd=target, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    jobs = (
        "from acme_orders.worker import CRON_JOBS, FUNCTIONS; "
        "print(*[f.__name__ for f in FUNCTIONS], *[f.__name__ for f, _ in CRON_JOBS])"
    )
    assert run(".venv/bin/python", "-c", jobs).split() == [
        "database_clock",
        "purge_expired_records",
    ]
    run("make", "lint", "typecheck")
    suites = "tests/worker tests/test_worker.py"
    options = f"-p no:cacheprovider --basetemp={tmp_path / 'suite-tmp'}"
    output = run("make", "test", f"PYTEST_ARGS={options} {suites}")
    assert re.search(r"\b[1-9]\d* passed\b", output), output


def _modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base in ("src", "."):
        for path in sorted((root / base).rglob("*.py")):
            parts = list(path.relative_to(root / base).with_suffix("").parts)
            if parts[0] in ("src", ".venv"):
                continue
            if parts[-1] == "__init__":
                parts.pop()
            found.setdefault(".".join(parts), path)
    return found


def _first_party_imports(path: Path, modules: dict[str, Path]) -> list[str]:
    tree = ast.parse(path.read_text())
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if _first_party(node.module) and node.module not in modules:
                missing.append(node.module)
            elif node.module in modules:
                defined = _names(modules[node.module])
                missing += [
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name not in defined and f"{node.module}.{alias.name}" not in modules
                ]
        elif isinstance(node, ast.Import):
            missing += [
                alias.name
                for alias in node.names
                if _first_party(alias.name) and alias.name not in modules
            ]
    return missing


def _first_party(module: str) -> bool:
    return module.split(".")[0] in ("acme_orders", "acme_orders_dev", "tests")


def _names(path: Path) -> set[str]:
    """The names a module defines or imports at its top level."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names
