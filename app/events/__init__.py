"""The event bus: a node change published once, delivered to every interested subscriber; in
this process (``bus.py``) or across replicas through PostgreSQL LISTEN/NOTIFY (``pg_bus.py``,
which reads nodes through what the composition root hands it).

Imports nothing of ours.
"""
