"""``python -m osintd``: the same entry point as the ``osintd`` console script."""

from osintd.cli import main

raise SystemExit(main())
