"""``python -m faas.cli``: the same as the ``faas`` command."""

import sys

from faas.cli import main

sys.exit(main())
