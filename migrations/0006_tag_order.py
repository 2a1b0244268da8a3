"""todo_tags carries its todo's created_at (which never changes), indexed after (user, tag): the
default newest-first page of a tag is an index range on any account size, on both databases."""

from peewee import SqliteDatabase


def up(migrator, db):
    timestamp = "DATETIME" if isinstance(db, SqliteDatabase) else "TIMESTAMP"
    db.execute_sql(
        f"ALTER TABLE todo_tags ADD COLUMN created_at {timestamp} NOT NULL DEFAULT '1970-01-01 00:00:00'"
    )
    db.execute_sql(
        "UPDATE todo_tags SET created_at = "
        "(SELECT todos.created_at FROM todos WHERE todos.id = todo_tags.todo_id)"
    )
    db.execute_sql("DROP INDEX todotag_user_id_tag_todo_id")
    db.execute_sql(
        "CREATE INDEX todotag_user_id_tag_created_at_todo_id ON todo_tags (user_id, tag, created_at, todo_id)"
    )


def down(migrator, db):
    db.execute_sql("DROP INDEX todotag_user_id_tag_created_at_todo_id")
    db.execute_sql("CREATE INDEX todotag_user_id_tag_todo_id ON todo_tags (user_id, tag, todo_id)")
    db.execute_sql("ALTER TABLE todo_tags DROP COLUMN created_at")
