"""State a restart must not lose: job kinds (template preparation runs as a job), registered
templates, the operator's dispatch pause, and the webhook/alert outbox.

- `jobs.kind`: "render" (every existing job) or "prepare_template";
- `templates`: one row per registered template, its state read from its prepare_template job;
- `service_state`: named operator switches (the dispatch pause);
- `outbox`: deliveries sent at least once with a stable id (the Idempotency-Key header).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False, server_default="render"))
    op.create_table(
        "templates",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "job_id",
            sa.String(32),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("video_name", sa.Text, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("is_still_image", sa.Boolean, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("outcome", sa.JSON(none_as_null=True)),
    )
    op.create_table(
        "service_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32)),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("due_at", _utc(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("service_state")
    op.drop_table("templates")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kind")
