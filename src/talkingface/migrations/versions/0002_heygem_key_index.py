"""An index that serves prefix searches on idempotency keys (HeyGem codes) on PostgreSQL.

`/easy/query` finds a code's newest job with `idempotency_key LIKE 'heygem:<code>:%'`. A
plain btree serves LIKE only under the C collation; `text_pattern_ops` serves it under any
collation, so the lookup stays an index scan however many jobs the store holds. (SQLite
uses the key's unique index through a range the store adds; there the index is a plain one.)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "ix_jobs_idempotency_key_prefix"


def upgrade() -> None:
    op.create_index(
        INDEX,
        "jobs",
        ["idempotency_key"],
        postgresql_ops={"idempotency_key": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="jobs")
