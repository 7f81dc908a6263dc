"""Persistence, and the only place with SQL: models, the unit of work, repositories (``desired``,
``tenants``, ``operations``), read models and the API's reads (``reads``, ``pages``), and the
migrations runner.

May import: config, domain.
"""
