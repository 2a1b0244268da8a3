"""When each session's newest refresh token expires, so that the worker can delete sessions nobody can
use any more (a login never logged out kept its row for good). Sessions from before this migration
have none until their next refresh."""

from peewee import SqliteDatabase


def up(migrator, db):
    kind = "DATETIME" if isinstance(db, SqliteDatabase) else "TIMESTAMP"
    db.execute_sql(f"ALTER TABLE sessions ADD COLUMN expires_at {kind}")
    db.execute_sql("CREATE INDEX sessions_expires_at ON sessions (expires_at)")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS sessions_expires_at")
    db.execute_sql("ALTER TABLE sessions DROP COLUMN expires_at")
