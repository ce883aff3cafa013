"""Lambda entry point of the test-connections phase; the logic is pg2rds.phases.test_connections."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("test-connections", phases.test_connections)
