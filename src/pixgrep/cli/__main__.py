"""`python -m pixgrep.cli`: the same as the `pixgrep` command."""

import sys

from pixgrep.cli import main

sys.exit(main())
