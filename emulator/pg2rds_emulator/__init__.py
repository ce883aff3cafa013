"""pg2rds on one machine: temporary PostgreSQL clusters, an embedded AWS (moto) with a DMS stand-in that
really moves data, and the ``pg2rds`` command line. Nothing here is shipped to Lambda."""
