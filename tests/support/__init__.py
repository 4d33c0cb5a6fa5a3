"""Helpers shared by meshperf's tests: commands, result checks, generated meshes, processes, testbeds,
the report's DOM and the paths of the data the tests read."""
