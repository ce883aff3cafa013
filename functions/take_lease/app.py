"""Lambda entry point of the first state; the logic is pg2rds.phases.take_lease."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("take-lease", phases.take_lease)
