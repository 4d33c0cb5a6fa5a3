"""Results on disk: the run directory, the journal, the mesh result file and CSV, reading them back, exports.

Imports ``spec`` (metrics, for exports) and the foundations; written to as measurements finish.
"""
