"""Projects, training cases from the scene, foundation weights and training jobs.

- ``projectLogic``: project labels from segments, training cases from the scene; ``ProjectLogic``.
- ``foundationLogic``: which foundation weights the backend has, downloading and importing them.
- ``foundationState``: the foundation model chooser's state (a model just added, a transfer in progress).
- ``presetLogic``: quality (Quick, Standard, Thorough) -> the backend's preset.
- ``jobDisplayLogic``: job status -> what the panel shows; which job to follow or resume; model titles.
- ``updateLogic``: *Update the model with the new cases*.
- ``trainingLogic``: the Train panel's state and decisions; ``TrainingLogic``.
- ``projectWidget``: the "Project and training cases" panel.
- ``trainingWidget``: the "Train" panel.
"""
