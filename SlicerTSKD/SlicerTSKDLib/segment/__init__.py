"""The student in Slicer: model cache, whole volume, live slice, ROI; box-to-mask with a SAM-family model.

- ``segmentationLogic``: ``SegmentationLogic`` and live segmentation, Qt-free.
- ``segmentationWidget``: the "Segment" panel.
- ``boxLogic``: box-to-mask (box models, the ROI as a slice and a box, writing, propagation), Qt-free.
- ``boxWidget``: the panel's "Box to mask" section.
- ``taskPanel``: one background task behind a panel's status line and progress bar (both panels' base).
"""
