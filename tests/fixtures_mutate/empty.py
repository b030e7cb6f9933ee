"""A module without declared layers (the CLI's exit code 5)."""
