"""The real Prometheus-stack fixtures, for the tests in this folder."""

from tests.promstack_fixtures import *  # noqa: F401,F403
