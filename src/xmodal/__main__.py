"""``python -m xmodal ...`` (and ``torchrun -m xmodal ...``): the same as the ``xmodal`` command."""

import sys

from xmodal.cli import main

if __name__ == "__main__":
    sys.exit(main())
