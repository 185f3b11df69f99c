"""Executing a batch: one task per item, compensation, admission, idempotent batches, and the
one entry point both doors call (`engine.run_batch`).
"""
