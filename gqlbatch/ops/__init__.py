"""Settings and operations: the configuration file, the sample API of the demo, and the
`gqlbatch` command.
"""
