"""Initial job-store schema: jobs, attempts and events.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ERROR_MESSAGE_CHECK = "error_code IS NULL OR length(error_message) > 0"


def _error_columns(*, with_traceback: bool) -> list[sa.Column[object]]:
    columns: list[sa.Column[object]] = [
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_stage", sa.String(32)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_retryable", sa.Boolean),
        sa.Column("error_details", sa.JSON(none_as_null=True)),
        sa.Column("error_cause", sa.Text),
    ]
    if with_traceback:
        columns.append(sa.Column("error_traceback", sa.Text))
    return columns


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("audio_path", sa.Text, nullable=False),
        sa.Column("video_path", sa.Text, nullable=False),
        sa.Column("input_duration_s", sa.Float),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("stage", sa.String(32)),
        sa.Column("frames_done", sa.Integer, nullable=False),
        sa.Column("frames_total", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("not_before", _utc()),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", _utc()),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("started_at", _utc()),
        sa.Column("finished_at", _utc()),
        sa.Column("progress_at", _utc()),
        sa.Column("result", sa.JSON(none_as_null=True)),
        *_error_columns(with_traceback=False),
        sa.CheckConstraint(ERROR_MESSAGE_CHECK, name="ck_jobs_error_message"),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_claim", "jobs", ["state", sa.text("priority DESC"), "created_at"])
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("worker", sa.Text),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc()),
        sa.Column("outcome", sa.String(16), nullable=False),
        *_error_columns(with_traceback=True),
        sa.CheckConstraint(ERROR_MESSAGE_CHECK, name="ck_attempts_error_message"),
        sa.UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
    )
    op.create_index("ix_attempts_job_id", "attempts", ["job_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_job_id", "events", ["job_id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("attempts")
    op.drop_table("jobs")
