"""The model layer: the registry of SAM variants, their weights, building them, and the Segmenter.

Imports ``sam_core.core`` only (and torch / segment_anything).
"""
