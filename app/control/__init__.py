"""The control loop: the level-triggered reconciler (its pass in ``reconciler``, tenant set-up in
``namespaces``, one node's objects in ``converge``, deletion in ``removal``), the pod observer,
and the node writer through which both change a node's row and publish after commit.

May import: store, cluster, events, config, domain. Never: services, schema, sandbox.
"""
