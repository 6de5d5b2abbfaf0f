"""Alembic migrations for the CRM schema, packaged so that they ship inside the wheel.

Use :mod:`crm_core.migrate` (or ``deskbot db ...``) rather than the ``alembic`` command: the
configuration is built in code, no ``alembic.ini`` is needed.
"""
