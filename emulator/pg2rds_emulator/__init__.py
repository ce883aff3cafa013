"""pg2rds on one machine: temporary PostgreSQL clusters, an embedded AWS (moto) with a DMS stand-in that
really moves data, and the ``pg2rds`` command line. Nothing here is shipped to Lambda."""

#: Local runs compress every Wait and Retry delay by this factor (1 = real time), so a run whose state
#: machine would wait minutes in AWS takes seconds; ``--time-scale`` changes it.
LOCAL_TIME_SCALE = 0.01

from pg2rds_emulator.moto_imports import defer_batch_package  # noqa: E402  (after the constant it needs none of)

defer_batch_package()  # before anything imports moto's Step Functions interpreter
