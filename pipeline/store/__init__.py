"""The database: engines and sessions (``db``), the tables (``models``), migrations, copies and backups.

Owns every table and how it is opened, migrated, copied and backed up. Imports only the base modules
(config, errors, resources) and ``subscribers.models``; every other package stores through it.
"""
