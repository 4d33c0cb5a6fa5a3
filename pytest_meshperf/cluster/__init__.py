"""The cluster a run measures: nodes and their fields, from hosts.yaml, address lists or ``local:N``.

Imports only the package's foundations (errors, vocabulary, yamlfile): everything else reads a Cluster.
"""
