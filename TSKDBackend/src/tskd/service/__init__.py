"""The backend service (``tskd serve``): projects and their labelled cases, training jobs, models.

A FastAPI app (:mod:`tskd.service.app`) keeps its state in SQLite inside a workspace folder
(:mod:`tskd.service.db`, :mod:`tskd.service.storage`) and runs ``tskd train`` as worker
processes scheduled by a thread of the server (:mod:`tskd.service.workers`). The HTTP routes
are documented in ``docs/service-api.md``. This package file imports nothing, so that the small
worker wrapper (:mod:`tskd.service.runner`) starts fast.
"""
