"""Projects, training cases from the scene, foundation weights and training jobs.

- ``projectLogic``: project labels from segments, training cases from the scene; ``ProjectLogic``.
- ``foundationLogic``: which foundation weights the backend has, downloading and importing them.
- ``trainingLogic``: quality -> preset, job status -> what the panel shows; ``TrainingLogic``.
- ``projectWidget``: the "Project and training cases" panel.
- ``trainingWidget``: the "Train" panel.
"""
