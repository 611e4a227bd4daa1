"""Engines: llama.cpp (real, :mod:`.llama`) and synthetic (cost model, :mod:`.synthetic`) behind one
interface (:mod:`.base`). Which one a session gets is :mod:`ttftui.measure.select`'s decision.
Imports nothing, on purpose (see :mod:`ttftui.measure`)."""
