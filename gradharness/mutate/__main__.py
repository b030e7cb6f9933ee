"""``python -m gradharness.mutate TARGET...``: the `gradharness mutate` subcommand, standalone."""
import sys

from .cli import main

sys.exit(main())
