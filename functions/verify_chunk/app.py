"""Lambda entry point of one verification chunk (a Map item); the logic is pg2rds.phases.verify_chunk."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("verify-chunk", phases.verify_chunk)
