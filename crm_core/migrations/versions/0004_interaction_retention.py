"""interaction retention: interaction.anonymized_at and its index (crm_core.services.retention)

On SQLite adding a nullable column and an index needs no copy of the table (batch mode
"auto"); dropping the column on downgrade copies it.

Revision ID: 0004_interaction_retention
Revises: 0003_campaigns
Create Date: 2026-12-03 13:41:45.889388
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (autogenerate renders its AutoString)
from alembic import op

import crm_core.types  # noqa: F401  (autogenerate renders crm_core.types.UTCDateTime)


# revision identifiers, used by Alembic.
revision: str = "0004_interaction_retention"
down_revision: str | Sequence[str] | None = "0003_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("anonymized_at", crm_core.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_interaction_retention", ["anonymized_at", "occurred_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_index("ix_interaction_retention")
        batch_op.drop_column("anonymized_at")
