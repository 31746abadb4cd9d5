"""Keep a WebSocket connected: reconnect with back-off whenever it ends."""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from typing import TYPE_CHECKING, Generator

from . import events

if TYPE_CHECKING:
    from .websocket import WebSocket


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date).

    Returns ``None`` when the value is missing or cannot be understood.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - now
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def persist(
    websocket: WebSocket,
    poll: float = 5,
    min_wait: float = 5,
    max_wait: float = 30,
    ping_rate: float = 30,
    ping_timeout: float | None = None,
    exit_event: threading.Event | None = None,
    respect_retry_after: bool = True,
) -> Generator[events.Event, None, None]:
    """Connect, yield every event, and reconnect after a random back-off, forever.

    After each connection ends it yields :class:`~lomond.events.BackOff` and waits
    ``min_wait + random() * min(max_wait - min_wait, 2 ** retries)`` seconds, where
    ``retries`` counts the failed attempts since the last ``Ready``. A
    ``Retry-After`` header on a rejection replaces that delay (clamped to
    ``[0, max_wait]``). Setting ``exit_event`` ends the generator: during a back-off
    at once, during a live connection after closing it gracefully.

    Raises:
        ValueError: ``min_wait`` is greater than ``max_wait``.
    """
    if min_wait > max_wait:
        raise ValueError("min_wait must not be greater than max_wait")
    if exit_event is None:
        exit_event = threading.Event()
    retries = 0
    while True:
        retries += 1
        retry_after: float | None = None
        closing = False
        for event in websocket.connect(poll=poll, ping_rate=ping_rate, ping_timeout=ping_timeout):
            if isinstance(event, events.Ready):
                retries = 0
            elif isinstance(event, events.Rejected) and respect_retry_after:
                retry_after = parse_retry_after(event.response.get("retry-after"), time.time())
            yield event
            if exit_event.is_set() and not closing:
                closing = True
                websocket.close()
        if exit_event.is_set():
            return
        if retry_after is not None:
            delay = min(retry_after, max_wait)
        else:
            delay = min_wait + random.random() * min(max_wait - min_wait, 2**retries)
        yield events.BackOff(delay)
        if exit_event.wait(delay):
            return
