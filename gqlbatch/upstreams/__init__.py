"""Talking to upstreams: the pooled aiohttp client, retries, deduplication and bulk merging
through aiodataloader.
"""
