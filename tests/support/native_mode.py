"""pytest plugin (``-p tests.support.native_mode`` in pyproject.toml): the test process
imports the interpreted modules, whatever native build the checkout holds.

It loads before any conftest, so before anything imports ``hotpath``. The in-process tests
use test doubles that compiled classes would refuse; the compiled build is tested through
the real gateway (``GATEHOUSE_TESTS_NATIVE_DIR``, see tests/support/processes.py).
"""

import os

os.environ["GATEHOUSE_NATIVE"] = "off"
