"""The chain: JSON-RPC to Quorum nodes (the client) and the probe that asks them how they are.

Knows nothing of the database or Kubernetes: the control loop hands it targets and takes its
readings (app/control/chain.py).
"""
