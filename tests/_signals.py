"""Ctrl-C in tests: send a real SIGINT to the own process while code runs."""
import os
import signal
import threading
from contextlib import contextmanager


@contextmanager
def sigint_after(seconds):
    """Send SIGINT to this process ``seconds`` after entering the block.

    Python's own SIGINT handler (which raises KeyboardInterrupt) is installed
    for the block: a shell starts background jobs with SIGINT ignored, and
    Python then leaves it ignored, so without this the signal would do
    nothing when the suite runs in the background.  The timer is cancelled
    on leaving the block.  The yielded dict's ``"sent"`` tells whether the
    signal went out.
    """
    state = {"sent": False}

    def fire():
        state["sent"] = True
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, fire)
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)
