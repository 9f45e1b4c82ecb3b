"""The command line: thin typer commands over ``dcctl.api``."""
