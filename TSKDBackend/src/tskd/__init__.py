"""SlicerTSKD backend: task-specific knowledge distillation for medical image segmentation.

The package is layered; lower layers never import higher ones:

    errors, log, config, progress      (foundation)
    data                               (images, datasets, slicing, normalisation, phantoms)
    engine                             (the one training loop)
    teacher, synthesis, student        (the three model families of TS-KD)
    runtime, evaluation, export        (inference, metrics, packaging)
    pipeline                           (stages as files on disk)
    service, cli                       (HTTP service, command line)
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
