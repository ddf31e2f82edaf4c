"""The run contract: what lives in a run's store and what workers accept, in one place.

Torch-free (the kit imports it): every store key and its parser (`keys`), the typed records of
manifests, checkpoint state, statuses and evaluations (`records`), the event schema every handler
accepts (`events`) and the metrics stream (`metrics`). Nothing outside this package spells a store key.
"""
