"""Lambda entry point of the plan-verification phase; the logic is pg2rds.phases.plan_verification."""

from pg2rds import phases
from pg2rds.lambda_support import phase_handler

handler = phase_handler("plan-verification", phases.plan_verification)
