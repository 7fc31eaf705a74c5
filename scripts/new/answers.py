"""The choices a project is generated with: from flags, an answers file, or prompts.

Precedence: a flag given on the command line, then the answers file, then a prompt (only when
stdin is a terminal and `--no-input` is not given), then the feature's documented default.
The answers are written into the generated project (ANSWERS_FILE), so the same project can be
generated again from a newer template (docs/new-project.md, "Taking later improvements").
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from scripts.new.features import FEATURES, missing_requirements

ANSWERS_FILE = "generator-answers.toml"
Ask = Callable[[str], str]


@dataclass(frozen=True)
class Answers:
    name: str
    features: Mapping[str, bool]

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(name for name, on in self.features.items() if on)

    def to_toml(self, source_commit: str) -> str:
        lines = [
            "# The answers this project was generated with; generating again with them from a",
            "# newer template gives the same project plus the template's improvements.",
            f'name = "{self.name}"',
            f'source_commit = "{source_commit}"',
            "",
            "[features]",
        ]
        lines += [f"{name} = {str(on).lower()}" for name, on in self.features.items()]
        return "\n".join(lines) + "\n"


def read_answers_file(path: Path) -> dict[str, object]:
    """`name` and `[features]` from an answers file; unknown keys are refused."""
    data = tomllib.loads(path.read_text())
    unknown = set(data) - {"name", "source_commit", "features"}
    features = data.get("features", {})
    if not isinstance(features, dict):
        raise ValueError(f"{path}: [features] must be a table")
    unknown |= {f"features.{key}" for key in set(features) - {f.name for f in FEATURES}}
    if unknown:
        raise ValueError(f"{path}: unknown answers: {', '.join(sorted(unknown))}")
    if not all(isinstance(value, bool) for value in features.values()):
        raise ValueError(f"{path}: each feature is true or false")
    return data


def resolve(
    name: str | None,
    flags: Mapping[str, bool | None],
    from_file: Mapping[str, object],
    ask: Ask | None,
) -> Answers:
    """The final answers; ValueError when the name is missing or features contradict."""
    chosen_name = (
        name or from_file.get("name") or (ask and ask("Project name (e.g. acme-orders): "))
    )
    if not isinstance(chosen_name, str) or not chosen_name:
        raise ValueError("a project name is needed: NAME=acme-orders (or name in the answers file)")
    file_features = from_file.get("features", {})
    assert isinstance(file_features, dict)
    features = {
        feature.name: _choice(
            flags.get(feature.name),
            file_features.get(feature.name),
            feature.summary,
            feature.default,
            ask,
        )
        for feature in FEATURES
    }
    answers = Answers(chosen_name, features)
    problems = missing_requirements(answers.enabled)
    if problems:
        raise ValueError("; ".join(problems))
    return answers


def _choice(
    flag: bool | None, from_file: object, summary: str, default: bool, ask: Ask | None
) -> bool:
    if flag is not None:
        return flag
    if isinstance(from_file, bool):
        return from_file
    if ask is None:
        return default
    hint = "Y/n" if default else "y/N"
    reply = ask(f"Include {summary}? [{hint}] ").strip().lower()
    return default if not reply else reply.startswith("y")
