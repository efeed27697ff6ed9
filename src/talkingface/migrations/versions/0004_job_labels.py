"""Jobs carry what their submitter attached and their inputs by name.

- `label` (indexed: `GET /v1/jobs?label=`) and free-form `metadata` (JSON), both nullable;
- `audio_name`, `video_name`: the input file names as sent (uploads without the stored
  `audio_`/`video_` prefix), so lists show them without the server paths;
- `template_id` (indexed): the registered template a job's video came from, which a template
  delete checks;
- `search_text`: the label and the names casefolded, what `GET /v1/jobs?q=` searches.

Existing jobs get their names, template and search text from their stored paths here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from pathlib import PurePath

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_BATCH = 500
_jobs = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("audio_path", sa.Text),
    sa.column("video_path", sa.Text),
    sa.column("audio_name", sa.Text),
    sa.column("video_name", sa.Text),
    sa.column("template_id", sa.String),
    sa.column("search_text", sa.Text),
)
_templates = sa.table("templates", sa.column("id", sa.String), sa.column("video_name", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("label", sa.String(200)))
        batch.add_column(sa.Column("metadata", sa.JSON(none_as_null=True)))
        batch.add_column(sa.Column("audio_name", sa.Text))
        batch.add_column(sa.Column("video_name", sa.Text))
        batch.add_column(sa.Column("template_id", sa.String(32)))
        batch.add_column(sa.Column("search_text", sa.Text))
    op.create_index("ix_jobs_label", "jobs", ["label"])
    op.create_index("ix_jobs_template_id", "jobs", ["template_id"])
    _name_existing_jobs(op.get_bind())


def _name_existing_jobs(conn: sa.Connection) -> None:
    templates = {row.id: row.video_name for row in conn.execute(sa.select(_templates))}
    rows = conn.execute(sa.select(_jobs.c.id, _jobs.c.audio_path, _jobs.c.video_path)).all()
    for start in range(0, len(rows), _BATCH):
        for row in rows[start : start + _BATCH]:
            audio = _input_name(row.id, row.audio_path, "audio")
            video = _input_name(row.id, row.video_path, "video")
            conn.execute(
                _jobs.update()
                .where(_jobs.c.id == row.id)
                .values(
                    audio_name=audio,
                    video_name=video,
                    template_id=_template_of(row.video_path, templates),
                    search_text="\n".join(n.casefold() for n in (audio, video) if n),
                )
            )


def _input_name(job_id: str, path: str, field: str) -> str | None:
    """The file name of a stored input; an upload (`inputs/<job id>/<field>_<name>`) by the
    name it was sent with."""
    if not path:
        return None
    stored = PurePath(path)
    prefix = f"{field}_"
    if stored.parent.name == job_id and stored.name.startswith(prefix):
        return stored.name[len(prefix) :] or stored.name
    return stored.name


def _template_of(video_path: str, templates: dict[str, str]) -> str | None:
    """The template whose stored file (`templates/<id>/<video name>`) a job's video is."""
    stored = PurePath(video_path)
    template_id = stored.parent.name
    named = templates.get(template_id)
    in_templates = stored.parent.parent.name == "templates"
    return template_id if named == stored.name and in_templates else None


def downgrade() -> None:
    op.drop_index("ix_jobs_template_id", table_name="jobs")
    op.drop_index("ix_jobs_label", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "search_text",
            "template_id",
            "video_name",
            "audio_name",
            "metadata",
            "label",
        ):
            batch.drop_column(column)
