"""The event bus: a node change published once, delivered to every interested subscriber.

Imports nothing of ours.
"""
