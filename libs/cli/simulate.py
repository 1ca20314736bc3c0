"""`stoker simulate` (the command lives with the pool's policies: services/pool/policies/cli.py)."""

from services.pool.policies.cli import register  # noqa: F401  (libs.cli.main discovers `register`)
