"""Pure rules, no I/O: names and addresses, enums, refusals, status derivation, QNM facts.

Imports nothing of ours.
"""
