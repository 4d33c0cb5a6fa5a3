"""What a mesh test asks for: units, metrics, parameters, thresholds, profiles and their layering per test.

Imports the foundations and ``tools`` (which parameters a tool takes); nothing of the run itself.
"""
