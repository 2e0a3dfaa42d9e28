"""`python -m delayed.supervisor -c FILE`: the same as `delayed supervise` (and `delayed-supervisor`)."""

from ..cli import supervise_alias

supervise_alias()
