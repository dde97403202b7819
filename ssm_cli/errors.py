"""The one exception type for bad user input: the CLI prints its message and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (unknown option, missing dataset, corrupt file, ...).

    The message must say what was wrong and what is valid; the CLI shows it without a traceback.
    """


def check_choice(kind: str, value: object, valid) -> None:
    """Raise UserError unless ``value`` is one of ``valid``, listing the valid values."""
    valid = list(valid)
    if value not in valid:
        raise UserError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, valid))}")


class DataFileError(UserError):
    """A data file that exists but cannot be used (corrupt, truncated, wrong format). ``path`` names
    it: a run that fails on it records the file, and a later ``ssm run`` retries the run once the
    file has changed."""

    def __init__(self, path, message: str):
        super().__init__(message)
        self.path = path


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM arrived (``ssm_cli.interrupts``). A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` takes it for a failure: the run stops where
    it is and stays resumable."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
