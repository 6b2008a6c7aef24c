"""Where the documentation lives, and error messages that point to the page explaining them."""

from __future__ import annotations

#: The documentation site; ``docs/`` of the repository builds it.
DOCS_URL = "https://layerscope.readthedocs.io/en/latest"

#: Anchors of the errors page (docs/errors.rst), one per kind of error.
ERROR_TOPICS = (
    "bad-model",
    "bad-optimizer",
    "bad-option",
    "unknown-kind",
    "no-module-selected",
    "missing-extra",
    "integrations",
    "no-event-files",
    "sharded-parameters",
)


def error_url(topic: str) -> str:
    """The address of the errors page's section on ``topic``.

    Raises:
        ValueError: ``topic`` is not one of :data:`ERROR_TOPICS`.

    Example:
        >>> error_url("bad-option")
        'https://layerscope.readthedocs.io/en/latest/errors.html#bad-option'

    """
    if topic not in ERROR_TOPICS:
        raise ValueError(f"error_url: unknown topic {topic!r}; known: {', '.join(ERROR_TOPICS)}")
    return f"{DOCS_URL}/errors.html#{topic}"


def error_message(message: str, topic: str) -> str:
    """``message`` followed by where the docs explain it.

    Example:
        >>> error_message("every must be positive", "bad-option")  # doctest: +ELLIPSIS
        'every must be positive (see https://.../errors.html#bad-option)'

    """
    return f"{message} (see {error_url(topic)})"
