"""The GraphQL door: the schema's types and resolvers, the view that serves them over HTTP and
websockets, the checks each document passes once (shape, complexity, trusted and persisted
documents), the compiled writers of `batch` results, the coercion of their arguments, and the
answer types made from upstreams' OpenAPI documents.
"""
