"""Lambda entry point of the prep-target phase; the logic is pg2rds.phases.prep_target."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("prep-target", phases.prep_target)
