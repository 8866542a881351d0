"""``python -m mgha ARGS`` runs the ``mgha`` daemon and CLI found by
:func:`mgha.nodes.find_binary` (the copy a wheel ships, else ``$MGHA_BIN``, the workspace
build or ``PATH``) with ``ARGS``, so an installed wheel needs nothing else on ``PATH``."""

import os
import sys

from .nodes import find_binary


def main() -> None:
    binary = str(find_binary())
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
