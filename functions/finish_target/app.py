"""Lambda entry point of the finish-target phase; the logic is pg2rds.phases.finish_target."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("finish-target", phases.finish_target)
