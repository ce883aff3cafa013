"""Errors the user can fix: the CLI prints their message as one line and exits 2, never a traceback."""


class UsageError(Exception):
    """Bad input on the command line or in a file it names; the message says what and how to fix it."""


#: Exit codes: 0 done (a migration SUCCEEDED), 1 a migration or an AWS call failed, 2 usage or input error.
EXIT_FAILED = 1
EXIT_USAGE = 2
