"""``python -m fastmetric``: the command-line comparison on digits (see :mod:`fastmetric._cli.main`)."""
import sys

from fastmetric._cli.main import main

if __name__ == "__main__":
    sys.exit(main())
