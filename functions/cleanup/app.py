"""Lambda entry point of the cleanup phase; the logic is pg2rds.phases.cleanup."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("cleanup", phases.cleanup)
