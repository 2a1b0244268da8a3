"""SQLite's lowered copies of title and description (0008) now follow PostgreSQL's lower(), each
character's own lowercase: Python's str.lower made a word-final Σ into ς and İ into i with a combining
dot, so `q` matched differently on the two databases. Only rows holding Σ or İ change."""

from peewee import SqliteDatabase


def fold(text):
    # The same rule as todoapi.todos.services.fold, written out: a migration must not change
    # when the application's code does.
    text = text.replace("\u0130", "i")
    if "\u03a3" in text:
        return "".join(char.lower() for char in text)
    return text.lower()


def fold_0008(text):
    return text.lower()


def up(migrator, db):
    _refold(db, fold)


def down(migrator, db):
    _refold(db, fold_0008)


def _refold(db, rule):
    if not isinstance(db, SqliteDatabase):
        return
    db.connection().create_function("todoapi_fold_0011", 1, rule, deterministic=True)
    db.execute_sql(
        "UPDATE todos SET title_folded = todoapi_fold_0011(title),"
        " description_folded = todoapi_fold_0011(description)"
        " WHERE instr(title, char(931)) OR instr(title, char(304))"
        " OR instr(description, char(931)) OR instr(description, char(304))"
    )
