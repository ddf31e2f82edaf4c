"""The run contract: what lives in a run's store and what workers accept, in one place.

Torch-free (the kit imports it): every store key and its parser (`keys`), and later the typed
records and the event schema. Nothing outside this package spells a store key.
"""
