"""pg2rds: migrate a self-managed PostgreSQL database into Amazon RDS for PostgreSQL with AWS DMS.

This package is the domain code shipped as the Lambda layer. The handlers in ``functions/`` only parse
their event into :class:`pg2rds.state.MigrationState`, call one function from here and return JSON.
"""
