"""PostgreSQL keeps lower(title) and lower(description) beside the text, so `?q=` compares them with
LIKE instead of lowering every row it reads: ILIKE lowers both sides of every comparison, which was
three quarters of a heavy user's search page. SQLite's LIKE folds ASCII case itself: nothing there."""

from peewee import SqliteDatabase


def up(migrator, db):
    if isinstance(db, SqliteDatabase):
        return
    db.execute_sql(
        "ALTER TABLE todos"
        " ADD COLUMN title_folded TEXT GENERATED ALWAYS AS (lower(title)) STORED,"
        " ADD COLUMN description_folded TEXT GENERATED ALWAYS AS (lower(description)) STORED"
    )
    # Statistics for the new columns now, not at autovacuum's next pass: without them the planner
    # guesses every search very selective and sorts an account's matches instead of walking its
    # newest-first index (30 ms instead of 0.1 ms for a 100,000-todo account's common word).
    db.execute_sql("ANALYZE todos")


def down(migrator, db):
    if isinstance(db, SqliteDatabase):
        return
    db.execute_sql("ALTER TABLE todos DROP COLUMN title_folded, DROP COLUMN description_folded")
