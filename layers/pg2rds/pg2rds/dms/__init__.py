"""Everything pg2rds asks of AWS DMS: instance, endpoints, connection tests, task, progress, cleanup."""
