"""`python -m cemlib.synthetic`: the same as `cem synth`."""

from cemlib.synthetic.cli import main

raise SystemExit(main())
