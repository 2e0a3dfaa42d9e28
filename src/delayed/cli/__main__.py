"""`python -m delayed.cli ...`: the same as `delayed ...`."""

from delayed.cli import main

main()
