"""Everything pg2rds does over a PostgreSQL connection (checks, preparation, slot cleanup)."""
