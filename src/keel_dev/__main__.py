"""`python -m keel_dev`: what `make dev` runs."""

from keel_dev.devloop import main

if __name__ == "__main__":
    raise SystemExit(main())
