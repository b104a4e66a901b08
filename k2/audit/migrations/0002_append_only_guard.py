"""The database itself refuses UPDATE, DELETE and TRUNCATE on the audit tables."""

from django.db import migrations

TABLES = ("audit_log", "audit_seal", "audit_archive")

FUNCTION = """
CREATE OR REPLACE FUNCTION k2_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'K2 audit tables are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def _create(table: str) -> str:
    return f"""
CREATE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION k2_audit_refuse_change();
CREATE TRIGGER {table}_guard_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION k2_audit_refuse_change();
"""


def _drop(table: str) -> str:
    return f"DROP TRIGGER IF EXISTS {table}_guard ON {table}; DROP TRIGGER IF EXISTS {table}_guard_truncate ON {table};"


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS k2_audit_refuse_change() CASCADE;"),
        *[migrations.RunSQL(_create(t), _drop(t)) for t in TABLES],
    ]
