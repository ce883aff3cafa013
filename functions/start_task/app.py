"""Lambda entry point of the start-task phase; the logic is pg2rds.phases.start_task."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("start-task", phases.start_task)
