"""`python -m gqlbatch`: the same as the `gqlbatch` command."""

from gqlbatch.cli import main

raise SystemExit(main())
