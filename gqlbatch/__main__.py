"""`python -m gqlbatch`: the same as the `gqlbatch` command."""

from gqlbatch.ops.cli import main

raise SystemExit(main())
