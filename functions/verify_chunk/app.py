"""Lambda entry point of one verification chunk (a Map item); the logic is pg2rds.phases.verify_chunk."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

#: A round's up to 100 chunk errors travel together in the state (capped at 256 KiB by Step Functions).
handler = phase_handler("verify-chunk", phases.verify_chunk, max_error_chars=1000)
