"""`python -m ldmkit` is the `ldmkit` console script."""

import sys

from ldmkit.cli import main

sys.exit(main())
