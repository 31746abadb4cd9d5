"""lomond's logger, ``logging.getLogger("lomond")``, set up when first used.

Importing :mod:`logging` costs several milliseconds (it brings :mod:`traceback`,
:mod:`tokenize` and more), and a connection that goes well logs nothing above
``INFO``. So the modules log through :data:`log`, which imports :mod:`logging` and
adds the :class:`logging.NullHandler` a library owes its logger (the logging HOWTO:
without it, Python's last-resort handler would print lomond's warnings to stderr)
the first time something is logged. ``DEBUG`` and ``INFO`` messages are dropped
while :mod:`logging` has not been imported: until then no handler can exist, and
Python's last-resort handler prints only warnings and errors, so nothing could
receive them. Applications configure ``logging.getLogger("lomond")`` as usual,
before or after that.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time (it slows importing lomond)
if TYPE_CHECKING:
    import logging

#: The logger's name.
NAME = "lomond"

_logger: logging.Logger | None = None


def get_logger() -> logging.Logger:
    """``logging.getLogger("lomond")``, with lomond's ``NullHandler`` added once."""
    global _logger
    if _logger is None:
        import logging

        logger = logging.getLogger(NAME)
        logger.addHandler(logging.NullHandler())
        _logger = logger
    return _logger


class LazyLogger:
    """The methods of :class:`logging.Logger` that lomond uses, loading it on first use.

    ``stacklevel=2`` makes records name the caller's file, function and line, not
    this class's.
    """

    def debug(self, message: str, *args: object) -> None:
        if "logging" in sys.modules:  # otherwise nothing could receive it
            get_logger().debug(message, *args, stacklevel=2)

    def info(self, message: str, *args: object) -> None:
        if "logging" in sys.modules:  # otherwise nothing could receive it
            get_logger().info(message, *args, stacklevel=2)

    def warning(self, message: str, *args: object) -> None:
        get_logger().warning(message, *args, stacklevel=2)

    def exception(self, message: str, *args: object) -> None:
        """Log ``message`` with the exception being handled (call it in ``except``)."""
        # Logger.exception() adds a frame of its own, which Python before 3.11 counts
        # in stacklevel: error(exc_info=True) names the caller on every version.
        get_logger().error(message, *args, exc_info=True, stacklevel=2)


#: What lomond's modules log with.
log = LazyLogger()
