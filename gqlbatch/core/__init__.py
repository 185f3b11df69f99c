"""The pure core: what a batch is, how it is validated, planned and rendered, and what comes
back. Synchronous and free of I/O; imports no I/O library (tests/test_contracts.py checks it).
"""
