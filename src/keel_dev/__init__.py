"""Development-only tooling: embedded PostgreSQL and Redis from pip wheels, and the `make dev` loop.

It lives beside `keel`, not in it: the editable install of the dev venv (`make venv`) puts all of
`src/` on the path, while the wheel the image installs holds `keel` alone (pyproject.toml's
`[tool.hatch.build.targets.wheel]`; checked by tests/deploy/test_image_contents.py).
"""
