"""Data layer: the asyncpg pool on the request path, SQLAlchemy metadata for Alembic."""
