"""A check that an allocation can fit in memory, before it is attempted.

Some requests are impossible on any machine (``max_rounds=10**12`` asks for
a table of 16 TB of seeds).  With memory overcommit an allocation of that
size may even succeed at first and fail, or bring the machine to a halt,
only when it is touched: the check refuses it up front, with a message that
names the parameter and the size.
"""
import os

__all__ = ["check_memory", "physical_memory"]


def physical_memory():
    """Bytes of physical memory of this machine, or None when unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None


def check_memory(n_bytes, what):
    """Raise MemoryError when ``n_bytes`` exceed the machine's physical memory.

    Parameters
    ----------
    n_bytes : int
        Size of the allocation (a Python int: no overflow).
    what : str
        What asks for it, for the message (e.g. ``"max_rounds=10**12 (a seed
        table of max_rounds + 1 rows)"``).
    """
    total = physical_memory()
    if total is not None and int(n_bytes) > total:
        raise MemoryError(
            f"{what} needs {int(n_bytes) / 2**30:.4g} GiB, more than this machine's "
            f"{total / 2**30:.4g} GiB of memory; ask for less."
        )
