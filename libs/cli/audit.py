"""`stoker audit verify|query`: the audit service's own commands."""

from services.audit.cli import register  # noqa: F401  (libs.cli.main discovers `register`)
