"""`python -m gradharness` is the `gradharness` command."""
import sys

from .cli import main

sys.exit(main())
