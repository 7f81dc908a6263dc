"""The event bus: a node change published once, delivered to every interested subscriber; in
this process (``bus.py``) or across replicas through PostgreSQL LISTEN/NOTIFY (``pg_bus.py``,
which reads nodes through what the composition root hands it). Beside it, the foreground
(``foreground.py``): the API's requests in flight, which the control loop's work makes way for.

Imports nothing of ours.
"""
