"""The doors: the GraphQL schema and its checks, the REST JSON and multipart formats, the
aiohttp application, and serving it.
"""
