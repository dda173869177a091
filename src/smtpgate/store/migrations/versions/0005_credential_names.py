"""credentials: app password names unique per account among those in use

Revision ID: 0005_credential_names
Revises: 0004_credential_epoch
Create Date: 2026-12-01 23:30:00

Names are how owners tell their app passwords apart, so two live ones of one account may
not share a name. "Live" is: not revoked and not replaced by a rotation (a successor keeps
its predecessor's name during the overlap). Duplicates made before this revision keep
working; all but the oldest get their id appended to the name.
"""
import sqlalchemy as sa
from alembic import op

revision = '0005_credential_names'
down_revision = '0004_credential_epoch'
branch_labels = None
depends_on = None

LIVE = "revoked_at IS NULL AND replaced_by IS NULL AND kind = 'app-password'"


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        f"SELECT id, account_id, name FROM credentials WHERE {LIVE} ORDER BY account_id, created_at, id"
    )).all()
    seen: set[tuple[int, str]] = set()
    for id_, account_id, name in rows:
        if (account_id, name) in seen:
            conn.execute(sa.text("UPDATE credentials SET name = :name WHERE id = :id"),
                         {"name": f"{name} ({id_})"[:200], "id": id_})
        seen.add((account_id, name))
    op.create_index(
        "uq_credentials_live_name", "credentials", ["account_id", "name"], unique=True,
        sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_credentials_live_name", table_name="credentials")
