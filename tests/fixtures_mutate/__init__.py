"""Small declared layers for the mutation tests (tests/test_mutate*.py)."""
