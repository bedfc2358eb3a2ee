"""Alembic environment: the engine comes from `pipeline.store.db`, never from an ini file."""

from alembic import context
from sqlmodel import SQLModel

import pipeline.store.models  # noqa: F401  (registers the tables)
import subscribers.models  # noqa: F401

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a table (copy, drop the old, rename): with foreign keys on, dropping
        # the old `issue` ran ON DELETE CASCADE on its items and deliveries. Off while migrating, as
        # Alembic advises; outside any transaction, where SQLite honours it.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if sqlite:
            connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")  # the connection goes back to the pool
            connection.commit()
