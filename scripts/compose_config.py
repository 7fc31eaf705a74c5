"""The two compose variants as Compose merges them, without a Docker engine.

    python scripts/compose_config.py SCHEMA.json     validate both variants against the schema

`variant("dev")` is docker-compose.yml; `variant("prod")` is docker-compose.yml with
compose.prod.yml on top. The merge follows the Compose specification for what these files use:
mappings merge key by key, `command`/`entrypoint`/`healthcheck.test` are replaced, other
sequences are appended without duplicates, `!reset` removes a key and `!override` replaces it
whole. tests/deploy checks the policies on the result; scripts/deploy_check.sh the schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"dev": ["docker-compose.yml"], "prod": ["docker-compose.yml", "compose.prod.yml"]}
REPLACED = {"command", "entrypoint", "test"}


class Reset:
    """`!reset`: the key is removed from what the earlier files set."""


class Override:
    """`!override`: the value replaces what the earlier files set, unmerged."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that knows Compose's two merge tags."""


def _reset(_loader: yaml.SafeLoader, _node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506
    return document


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Reset):
            merged.pop(key, None)
        elif isinstance(value, Override):
            merged[key] = value.value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list) and key not in REPLACED:
            merged[key] = merged[key] + [item for item in value if item not in merged[key]]
        else:
            merged[key] = value
    return merged


def variant(name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for file in VARIANTS[name]:
        merged = merge(merged, load(file))
    return merged


def main(schema_path: str) -> int:
    import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev lock

    validator = jsonschema.Draft7Validator(json.loads(Path(schema_path).read_text()))
    failed = False
    for name, files in VARIANTS.items():
        errors = sorted(validator.iter_errors(variant(name)), key=lambda e: list(e.path))
        for error in errors:
            where = "/".join(map(str, error.path)) or "<root>"
            print(f"{' + '.join(files)}: {where}: {error.message}")
        if not errors:
            print(f"{' + '.join(files)}: valid against the Compose specification schema")
        failed = failed or bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
