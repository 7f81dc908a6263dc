"""The local Kubernetes control plane (a real apiserver, controllers and scheduler, built from
Debian's sources) and the simulated kubelet. Knows nothing of the service; only the entry points
(``app.server``, ``app.cli``) start it.
"""
