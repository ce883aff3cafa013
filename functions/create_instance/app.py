"""Lambda entry point of the create-instance phase; the logic is pg2rds.phases.create_instance."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("create-instance", phases.create_instance)
