"""Data layer: images with geometry, label tables, datasets, checks, splits, prepared slices.

Modules are imported directly (``from tskd.data.dataset import load_dataset``); this package file
imports nothing, so that ``import tskd.data.image`` stays light.
"""
