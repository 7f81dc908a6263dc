"""The GraphQL surface: Strawberry types, queries, mutations, subscriptions, auth, context and
loaders, GraphiQL; ``schema.graphql`` is the exported SDL, pinned by a test.

May import: services, store (read models and reads), events, config, domain. Never the
cluster, the control loop or the sandbox.
"""
