"""The scenarios `run.py --scenarios` can name: every module here registers some (see registry.py)."""
