"""Talking to a backend service, and starting a local one.

- ``client``: the backend service's HTTP client (standard library only; see docs/service-api.md).
- ``backendLogic``: starting a local ``tskd serve``, checking a backend, connection errors in plain
  words; ``BackendLogic``, the "Backend server" panel's decisions.
- ``backendWidget``: the "Backend server" panel.
"""
