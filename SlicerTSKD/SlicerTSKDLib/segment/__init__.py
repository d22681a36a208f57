"""The student in Slicer: model cache, whole volume, live slice, ROI.

- ``segmentationLogic``: ``SegmentationLogic`` and live segmentation, Qt-free.
- ``segmentationWidget``: the "Segment" panel.
"""
