"""``python catalog_serve.py serve ...``: the ``tskd`` command with a test catalog, for tests that need a
server in its own process (to kill it). The catalog is the YAML file ``$TSKD_TEST_CATALOG``; every
``urlopen`` must go to 127.0.0.1 (anything else fails the download), so no test reaches the internet."""

from __future__ import annotations

import os
import sys
import urllib.parse
import urllib.request

import yaml

from tskd.foundation import catalog, fetch, importing, resolve

ENV = "TSKD_TEST_CATALOG"


def main() -> int:
    with open(os.environ[ENV], encoding="utf-8") as stream:
        entries = catalog.parse_catalog(yaml.safe_load(stream), os.environ[ENV])
    for module in (catalog, fetch, importing, resolve):
        if hasattr(module, "load_catalog"):
            module.load_catalog = lambda: entries  # type: ignore[assignment]
    real = urllib.request.urlopen

    def loopback_only(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        if urllib.parse.urlparse(url).hostname != "127.0.0.1":
            raise RuntimeError(f"a test server tried to reach {url}")
        return real(request, *args, **kwargs)

    urllib.request.urlopen = loopback_only  # type: ignore[assignment]
    from tskd.cli.main import main as tskd_main

    return tskd_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
