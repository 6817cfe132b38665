"""`python -m supportgraph`: the same command as the installed `supportgraph`."""

import sys

from supportgraph.app.cli import main

sys.exit(main())
