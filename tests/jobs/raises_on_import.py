"""A job module that raises while it is imported (`--require raises_on_import`)."""

raise ValueError("the settings module is missing API_KEY")
