"""Alembic migrations of the dsar database, shipped with the package so a
wheel install can run ``dsar db upgrade``."""
