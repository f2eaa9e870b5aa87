"""One exception type for bad user input, so the entry point can report it in a line."""


class ConfigError(ValueError):
    """A value a user chose (config, file, directory) is not allowed; the message says why."""


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is an int in ``[low, high]``; otherwise a ConfigError that names it."""
    allowed = f">= {low}" if high is None else f"in {low}..{high}"
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise ConfigError(f"{name}={value!r} is not allowed: it must be an integer {allowed}")
    return value


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ConfigError listing them."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed: choose one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]
