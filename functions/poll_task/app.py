"""Lambda entry point of the poll-task phase; the logic is pg2rds.phases.poll_task."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("poll-task", phases.poll_task)
