"""`python -m agent` runs the device agent (same as the `ota-agent` console script)."""

import sys

from agent.cli import main

sys.exit(main())
