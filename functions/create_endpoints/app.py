"""Lambda entry point of the create-endpoints phase; the logic is pg2rds.phases.create_endpoints."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("create-endpoints", phases.create_endpoints)
