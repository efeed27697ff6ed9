"""Alembic environment for the job store; JobStore.migrate() runs it with its connection."""

from __future__ import annotations

from alembic import context

from talkingface.errors import ConfigError
from talkingface.jobs.tables import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise ConfigError("Run talkingface migrations through JobStore.migrate(), not alembic.")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
