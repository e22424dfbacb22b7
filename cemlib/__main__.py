"""`python -m cemlib`: the same as the `cem` command."""

from cemlib.cli import main

raise SystemExit(main())
