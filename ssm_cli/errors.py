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
