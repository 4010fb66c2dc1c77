"""Metadata store: SQLAlchemy 2 Core tables, engines and queries for SQLite and PostgreSQL."""
