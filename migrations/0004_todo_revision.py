"""A per-user revision of the todo list, bumped by every change to it: list totals and stats are
cached under it, so they stay exact without counting a large account's rows on every request."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE users ADD COLUMN todo_revision BIGINT NOT NULL DEFAULT 0")


def down(migrator, db):
    db.execute_sql("ALTER TABLE users DROP COLUMN todo_revision")
