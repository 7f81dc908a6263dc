"""The Kubernetes API, and the only package (with the sandbox) that imports kubernetes_asyncio:
the client wrapper and its error types, connecting, the object builders, the pod informer.

May import: config, domain.
"""
