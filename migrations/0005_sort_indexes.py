"""Index-ordered pages for the "most urgent first" order (-priority,due_date) and for title order,
so that a large account's page costs an index range, not a sort of all its todos."""

from peewee import SqliteDatabase


def up(migrator, db):
    if isinstance(db, SqliteDatabase):
        # SQLite indexes cannot say NULLS LAST: the list orders by (due_date IS NULL), due_date there.
        db.execute_sql(
            "CREATE INDEX todos_user_urgency ON todos "
            "(user_id, priority DESC, (due_date IS NULL), due_date, id DESC)"
        )
    else:
        db.execute_sql(
            "CREATE INDEX todos_user_urgency ON todos "
            "(user_id, priority DESC, due_date ASC NULLS LAST, id DESC)"
        )
    db.execute_sql("CREATE INDEX todos_user_title ON todos (user_id, lower(title), id)")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS todos_user_urgency")
    db.execute_sql("DROP INDEX IF EXISTS todos_user_title")
