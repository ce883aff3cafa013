"""The ``pg2rds`` command's entry point: its modules load with the collector paused
(:mod:`pg2rds_cli.collector`), then :func:`pg2rds_cli.main.run` runs the command."""

from typing import NoReturn

from pg2rds_cli.collector import paused


def run() -> NoReturn:
    with paused():
        from pg2rds_cli import main
    main.run()


if __name__ == "__main__":
    run()
