"""Due-soon notifications, their deliveries, and the index the scan walks."""

import datetime

from peewee import *


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = "users"

    class Todo(Model):
        due_date = DateField(null=True)
        done = BooleanField()

        class Meta:
            database = db
            table_name = "todos"

    class Notification(Model):
        id = AutoField()
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        todo = ForeignKeyField(Todo, on_delete="CASCADE", index=False)
        kind = CharField(max_length=32, default="due_soon")
        title = CharField(max_length=200)
        due_date = DateField()
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        read_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "notifications"
            indexes = (
                (("todo", "due_date"), True),
                (("user", "created_at", "id"), False),
            )

    class Delivery(Model):
        id = AutoField()
        notification = ForeignKeyField(Notification, on_delete="CASCADE", index=False)
        channel = CharField(max_length=16)
        status = CharField(max_length=16, default="pending")
        attempts = IntegerField(default=0)
        last_error = TextField(null=True)
        lease_until = DateTimeField(null=True)
        next_attempt_at = DateTimeField(default=datetime.datetime.utcnow)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            database = db
            table_name = "deliveries"
            indexes = (
                (("notification", "channel"), True),
                (("status", "next_attempt_at"), False),
            )

    db.create_tables([Notification, Delivery])
    db.execute_sql("CREATE INDEX todos_open_due_date ON todos (due_date, id) WHERE done = false")


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS todos_open_due_date")
    for table in ("deliveries", "notifications"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
