"""SQLite never hands out an id twice, as PostgreSQL's serial never does: without AUTOINCREMENT it
gives the next row max(id) + 1, so deleting the newest row frees its id. A reused notification id
reused its webhook-id (receivers dropped the new one as a duplicate), a reused todo id made an
idempotent replay's Location name another todo. SQLite cannot ALTER a column to AUTOINCREMENT: each
table is rebuilt (https://www.sqlite.org/lang_altertable.html#otheralter), its schema otherwise the
same text as before. PostgreSQL: nothing to do."""

import re

from peewee import SqliteDatabase

TABLES = ("users", "todos", "idempotency_keys", "notifications", "deliveries")
PLAIN = '"id" INTEGER NOT NULL PRIMARY KEY'
AUTOINCREMENT = f"{PLAIN} AUTOINCREMENT"
ID_COLUMN = re.compile(re.escape(PLAIN) + "(?= *[,)])")
# Ids that rows other than the table's own still name: a stored first response replays its todo's id.
NAMED_ELSEWHERE = {
    "todos": "SELECT max(json_extract(body, '$.id')) FROM idempotency_keys WHERE json_valid(body)",
}


def up(migrator, db):
    if not isinstance(db, SqliteDatabase):
        return
    _check_foreign_keys_off(db)
    for table in TABLES:
        _rebuild(db, table, lambda columns: ID_COLUMN.subn(AUTOINCREMENT, columns))
    _check_foreign_keys(db)
    for table in TABLES:
        # The copy already set each sequence to its table's largest id; an id only named elsewhere
        # must not come back either.
        largest = _largest(db, f"SELECT max(id) FROM {table}")  # noqa: S608
        floor = max(largest, _largest(db, NAMED_ELSEWHERE.get(table)))
        db.execute_sql("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (floor, table))
        db.execute_sql(
            "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
            (table, floor, table),
        )


def down(migrator, db):
    if not isinstance(db, SqliteDatabase):
        return
    _check_foreign_keys_off(db)
    for table in TABLES:
        _rebuild(db, table, lambda sql: (sql.replace(AUTOINCREMENT, PLAIN), sql.count(AUTOINCREMENT)))
    _check_foreign_keys(db)


def _largest(db, query):
    return (db.execute_sql(query).fetchone()[0] or 0) if query else 0


def _check_foreign_keys_off(db):
    # With them on, dropping `users` would delete every todo by cascade. The runner turns them off
    # around the migration's transaction (playhouse's SqliteMigrator), where the pragma can change.
    if db.execute_sql("PRAGMA foreign_keys").fetchone()[0]:
        raise RuntimeError("the table rebuild must run with foreign keys off (through the migration runner)")


def _check_foreign_keys(db):
    broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:10]}")


def _rebuild(db, table, change_columns):
    """Steps 3-8 of SQLite's table rebuild, the id column's definition changed by `change_columns`
    (exactly once); no views name these tables (step 9). The runner does steps 1-2 and 11-12
    (foreign keys off, BEGIN; COMMIT, foreign keys on), so a failure leaves the database as it
    was; `up` and `down` do step 10, the foreign key check."""
    [create] = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    head = f'CREATE TABLE "{table}" ('
    columns, changed = change_columns(create.removeprefix(head))
    if not create.startswith(head) or changed != 1:
        raise RuntimeError(f"unexpected schema for {table}: {create}")
    # Indexes (partial and expression ones included) and triggers, as written; the table's own
    # (sqlite_autoindex_*, sql NULL) come back with its constraints.
    dependents = [
        sql
        for (sql,) in db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = ?"
            " AND sql IS NOT NULL ORDER BY rowid",
            (table,),
        )
    ]
    # Generated columns (hidden 2 and 3) cannot be written: the new table computes them again.
    stored = ", ".join(
        f'"{name}"' for _, name, *_, hidden in db.execute_sql(f'PRAGMA table_xinfo("{table}")') if hidden == 0
    )
    rebuilt = f"{table}__rebuilt"
    db.execute_sql(f'CREATE TABLE "{rebuilt}" ({columns}')
    db.execute_sql(f'INSERT INTO "{rebuilt}" ({stored}) SELECT {stored} FROM "{table}"')  # noqa: S608
    db.execute_sql(f'DROP TABLE "{table}"')
    db.execute_sql(f'ALTER TABLE "{rebuilt}" RENAME TO "{table}"')
    for sql in dependents:
        db.execute_sql(sql)
