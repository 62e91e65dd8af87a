"""`python -m packager ...` runs the `ota-pack` command line."""

from packager.cli import main

raise SystemExit(main())
