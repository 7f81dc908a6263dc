"""What mutations and token commands do: validate (by the domain's rules), write the desired
state through the caller's unit of work, and answer with a ``Result`` (objects, operation,
refusals). Services never commit and never talk to Kubernetes.

May import: store, events, config, domain. Never: control, cluster, schema, sandbox.
"""
