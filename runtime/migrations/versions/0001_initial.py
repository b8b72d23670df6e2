"""Initial store schema: incidents, approval_answers, state_blobs, leader_lease.

Databases created before migrations existed (tables made by `create_all`) already hold these
tables: each is created only if missing, so upgrading such a database keeps every row and
only records the revision.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("incidents"):
        op.create_table(
            "incidents",
            sa.Column("id", sa.String(), primary_key=True),
            sa.Column("state", sa.String(), nullable=False),
            sa.Column("services_json", sa.String(), nullable=False),
            sa.Column("onset", sa.String(), nullable=False),
            sa.Column("opened_at", sa.String(), nullable=False),
            sa.Column("updated_at", sa.String(), nullable=False),
            sa.Column("settle_until", sa.String(), nullable=False),
            sa.Column("graph_started", sa.Boolean(), nullable=False),
            sa.Column("waiting_for", sa.String(), nullable=True),
            sa.Column("wait_payload_json", sa.String(), nullable=True),
            sa.Column("deadline", sa.String(), nullable=True),
            sa.Column("cause", sa.String(), nullable=True),
            sa.Column("action", sa.String(), nullable=True),
            sa.Column("target", sa.String(), nullable=True),
            sa.Column("summary", sa.String(), nullable=False),
            sa.Column("anomaly_count", sa.Integer(), nullable=False),
        )
        op.create_index("ix_incidents_state", "incidents", ["state"])
    if _missing("approval_answers"):
        op.create_table(
            "approval_answers",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("incident_id", sa.String(), nullable=False),
            sa.Column("approver", sa.String(), nullable=False),
            sa.Column("roles_json", sa.String(), nullable=False),
            sa.Column("approve", sa.Boolean(), nullable=False),
            sa.Column("comment", sa.String(), nullable=False),
            sa.Column("ts", sa.String(), nullable=False),
            sa.Column("delivered", sa.Boolean(), nullable=False),
        )
        op.create_index("ix_approval_answers_incident_id", "approval_answers", ["incident_id"])
        op.create_index("ix_approval_answers_delivered", "approval_answers", ["delivered"])
    if _missing("state_blobs"):
        op.create_table(
            "state_blobs",
            sa.Column("name", sa.String(), primary_key=True),
            sa.Column("data", sa.LargeBinary(), nullable=False),
            sa.Column("updated_at", sa.String(), nullable=False),
        )
    if _missing("leader_lease"):
        op.create_table(
            "leader_lease",
            sa.Column("name", sa.String(), primary_key=True),
            sa.Column("holder", sa.String(), nullable=False),
            sa.Column("epoch", sa.Integer(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=False),
            sa.Column("acquired_at", sa.Float(), nullable=False),
        )


def downgrade() -> None:
    for name in ("leader_lease", "state_blobs", "approval_answers", "incidents"):
        op.drop_table(name)
