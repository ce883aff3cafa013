"""Lambda entry point of the validate-source phase; the logic is pg2rds.phases.validate_source."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("validate-source", phases.validate_source)
