"""Lambda entry point of the create-slot phase; the logic is pg2rds.phases.create_slot."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("create-slot", phases.create_slot)
