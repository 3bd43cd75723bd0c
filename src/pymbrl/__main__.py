"""``python -m pymbrl``: the ``pymbrl`` command, for an environment whose scripts are not on the PATH."""

import sys

from pymbrl.cli import main

sys.exit(main())
