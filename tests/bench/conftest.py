"""The simulator's tests use the local stack's fixture (one whole stack per pytest worker)."""

from tests.local.conftest import local_stack  # noqa: F401  (a fixture, found by pytest through this import)
