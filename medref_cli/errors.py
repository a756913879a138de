"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class MedrefError(Exception):
    """A user-facing error: the message names the file or input and the problem, on one line."""

    exit_code = 2
