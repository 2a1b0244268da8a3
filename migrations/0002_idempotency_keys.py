"""Stored first responses for keyed, retry-safe todo creation."""

import datetime

from peewee import *


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = "users"

    class IdempotencyKey(Model):
        id = AutoField()
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        key = CharField(max_length=255)
        fingerprint = CharField(max_length=64)
        status = IntegerField(null=True)
        body = TextField(null=True)
        location = TextField(null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)

        class Meta:
            database = db
            table_name = "idempotency_keys"
            indexes = ((("user", "key"), True),)

    db.create_tables([IdempotencyKey])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS idempotency_keys")
