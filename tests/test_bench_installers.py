"""The benchmarks install their Debian tools on a fresh machine, whose package lists are empty
until `apt-get update` runs (issue 17). A stand-in `apt-get` on PATH models that machine: it
installs only after an update."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from bench import edge, harness

FAKE_APT = """#!/bin/sh
echo "$*" >> "{log}"
case "$1" in
  update) : > "{lists}" ;;
  install)
    [ -e "{lists}" ] || {{ echo "E: Unable to locate package $3" >&2; exit 100; }}
    printf '#!/bin/sh\\n' > "{bin}/$3"
    chmod +x "{bin}/$3" ;;
esac
"""


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds the stand-in apt-get and chmod, nothing else (so no wrk); we are root."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(log=tmp_path / "apt.log", lists=tmp_path / "lists", bin=bin_dir))
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    tools = tmp_path / "tools"
    tools.mkdir()
    chmod = shutil.which("chmod")
    assert chmod is not None
    (tools / "chmod").symlink_to(chmod)
    monkeypatch.setenv("PATH", f"{bin_dir}:{tools}")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    return tmp_path


def wrk_from_harness() -> str | None:
    return harness.ensure_debian_tool("wrk", "wrk")


@pytest.mark.parametrize("install", [wrk_from_harness, edge.ensure_wrk])
def test_wrk_is_installed_after_updating_the_package_lists(
    fresh_machine: Path, install: Callable[[], str | None]
) -> None:
    assert install() == str(fresh_machine / "bin" / "wrk")
    calls = (fresh_machine / "apt.log").read_text().splitlines()
    assert calls[0] == "update"
    assert calls[1].startswith("install")
