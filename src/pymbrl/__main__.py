"""``python -m pymbrl``: the ``pymbrl`` command, for an environment whose scripts are not on the PATH."""

import sys

from pymbrl.cli import main

if __name__ == "__main__":  # a tool that imports every module (documentation, coverage) runs nothing
    sys.exit(main())
