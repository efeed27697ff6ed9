"""Render jobs whose quality receipt falls under the server's sync floor are flagged.

- `low_sync` (indexed, nullable): true when the job's receipt (`result.receipt`, measured
  after rendering for jobs with `evaluate`) has a figure under `evaluate.low_sync_floor` or
  `evaluate.low_lse_c_floor`; false when measured and above; NULL without a receipt. It is
  what `GET /v1/jobs?low_sync=true` filters on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("low_sync", sa.Boolean))
    op.create_index("ix_jobs_low_sync", "jobs", ["low_sync"])


def downgrade() -> None:
    op.drop_index("ix_jobs_low_sync", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("low_sync")
