"""Error types shared by the controller side.

A ``UsageError`` is a user mistake (bad inventory, bad threshold, bad option):
the plugin turns it into pytest's usage-error exit (4) with its one-line message
and no traceback.  A ``MeasurementError`` is a measurement that could not be
made; the plugin reports the test as an error, never as a threshold failure.
"""


class MeshperfError(Exception):
    """Base of every meshperf error."""


class UsageError(MeshperfError):
    """A user mistake; ``str(err)`` is the whole one-line message."""


class InventoryError(UsageError):
    """The cluster specification (``--cluster``) is invalid."""


class ThresholdError(UsageError):
    """A threshold expression is invalid."""


class ParameterError(UsageError):
    """A measurement parameter (mark, option, profile) is invalid."""


class MeasurementError(MeshperfError):
    """A measurement could not be made: tool error, refused connection, time-out."""


class AgentError(MeshperfError):
    """An agent could not be started or answered with an error."""


class TransportError(AgentError):
    """A node could not be reached, checked or set up (SSH, host keys, python3, deploy)."""
