"""The `supportgraph` command line.

Exit status: 0 on success, 1 when a command ran but could not do what was asked (for example a
review that was already decided), 2 on bad input with a one-line reason on stderr.

One module per group of commands; `main` builds the parser. Third-party and heavy imports
stay inside the commands, so a bad argument is answered in a fraction of a second.
"""

from supportgraph.app.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
