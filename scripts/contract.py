"""`make contract`: schemathesis (CLI) over a running Keel, authenticated as a new user.

    CONTRACT_URL=http://127.0.0.1:8000 python scripts/contract.py [extra `schemathesis run` args]

Registers an account through the API, logs in, and runs every phase and every check with the
bearer token. Settings shared with the suite (the documented false positives) are in
scripts/schemathesis.toml. `logout` is left out here: it revokes the one token the run uses (the
suite gives each logout a session of its own). Rate limits stay on: 429s are documented answers.
Environment: CONTRACT_URL (default http://127.0.0.1:8000), CONTRACT_MAX_EXAMPLES (25),
CONTRACT_SEED (fixed by default, so two runs send the same requests), CONTRACT_MAX_TIME
(seconds, unset: no limit).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PASSWORD = "contract-" + uuid.uuid4().hex  # a new account each run


def bearer_token(base_url: str) -> str:
    email = f"contract-{uuid.uuid4().hex[:12]}@example.com"
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        registered = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        if registered.status_code != 201:
            sys.exit(f"contract: register failed: {registered.status_code} {registered.text}")
        login = client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        if login.status_code != 200:
            sys.exit(f"contract: login failed: {login.status_code} {login.text}")
        token: str = login.json()["access_token"]
        return token


def main(extra: list[str]) -> None:
    base_url = os.environ.get("CONTRACT_URL", "http://127.0.0.1:8000").rstrip("/")
    try:
        token = bearer_token(base_url)
    except httpx.TransportError as error:
        sys.exit(f"contract: no Keel at {base_url} ({error}); start one with `make dev`")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{base_url}/openapi.json",
        "--url",
        base_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--mode",
        "all",
        "--max-examples",
        os.environ.get("CONTRACT_MAX_EXAMPLES", "25"),
        "--seed",
        os.environ.get("CONTRACT_SEED", "20261122"),
        "--generation-deterministic",
        "--exclude-operation-id",
        "logout",
    ]
    if max_time := os.environ.get("CONTRACT_MAX_TIME"):
        command += ["--max-time", max_time]
    os.execv(command[0], [*command, *extra])  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
