"""QaaS, everything but the GraphQL surface (which is ``schema``). Packages, top to bottom; each
may import from the ones below it, never from above (import-linter holds this in ``./dev test``):

- ``cli``, ``server``: entry points (the `qaas` command; the Starlette app and its lifespan)
- ``services`` | ``control``: what mutations do | the control loop; they never import each other
- ``store`` | ``cluster`` | ``events``: the database | the Kubernetes API | the event bus
- ``config``: settings
- ``domain``: pure rules
- ``sandbox`` stands apart: a local control plane that knows nothing of the service.
"""
