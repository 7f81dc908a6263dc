"""The `qaas` command line: ``main`` parses and runs one command (see ``parser.py``)."""

from app.cli.parser import main

__all__ = ["main"]
