"""A ``ThreadingHTTPServer`` run in a thread for the length of a ``with``: the tests' stand-ins."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


@contextmanager
def serving(server: ThreadingHTTPServer, before_stop: Callable[[], None] | None = None) -> Iterator[None]:
    """Serve until the ``with`` ends, then stop (``before_stop`` first: to end a body still being sent)."""
    # A short poll interval: shutdown() waits for the loop's next look at its flag.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        if before_stop is not None:
            before_stop()
        server.shutdown()
        server.server_close()
        thread.join()
