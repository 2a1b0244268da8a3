"""SQLite keeps lowered copies of title and description too, as PostgreSQL has since 0007, so that
`?q=` and the title order are case-insensitive beyond ASCII: SQLite's own LIKE and lower() fold
A-Z only, so `q=ÉMILE` missed "émile". SQLite has no Unicode lower() to compute them with, so the
application writes them (`todoapi.todos.services.fold`, Python's str.lower) and this fills them in
for the rows already there. The title order's index moves to the copy."""

from peewee import SqliteDatabase


def fold(text):
    # The same rule as todoapi.todos.services.fold, written out: a migration must not change
    # when the application's code does.
    return text.lower()


def up(migrator, db):
    if not isinstance(db, SqliteDatabase):
        return
    db.execute_sql("ALTER TABLE todos ADD COLUMN title_folded TEXT NOT NULL DEFAULT ''")
    db.execute_sql("ALTER TABLE todos ADD COLUMN description_folded TEXT NOT NULL DEFAULT ''")
    db.connection().create_function("todoapi_fold_0008", 1, fold, deterministic=True)
    db.execute_sql(
        "UPDATE todos SET title_folded = todoapi_fold_0008(title),"
        " description_folded = todoapi_fold_0008(description)"
    )
    db.execute_sql("DROP INDEX todos_user_title")
    db.execute_sql("CREATE INDEX todos_user_title ON todos (user_id, title_folded, id)")


def down(migrator, db):
    if not isinstance(db, SqliteDatabase):
        return
    db.execute_sql("DROP INDEX todos_user_title")
    db.execute_sql("CREATE INDEX todos_user_title ON todos (user_id, lower(title), id)")
    db.execute_sql("ALTER TABLE todos DROP COLUMN title_folded")
    db.execute_sql("ALTER TABLE todos DROP COLUMN description_folded")
