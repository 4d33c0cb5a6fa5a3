"""What a tool module raises, for every tool: the controller turns it into a measurement error."""
from __future__ import annotations


class ToolFailure(Exception):
    """The tool ran but reported an error (or printed no result); the message is the tool's own."""
