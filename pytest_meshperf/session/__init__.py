"""The pytest side: meshperf's session in a pytest run, its options, collection, items, fixtures and xdist.

The only package that imports pytest (and xdist); it may import every other package.  ``plugin.py`` wires
pytest's hooks to it.
"""
