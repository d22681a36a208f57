"""Talking to a backend service, and starting a local one.

- ``client``: the backend service's HTTP client (standard library only; see docs/service-api.md).
- ``backendLogic``: starting a local ``tskd serve``, checking a backend, connection errors in plain
  words; ``BackendLogic``, the "Backend server" panel's decisions.
- ``serverState``: the local server's record (pid, port, token) and the workspace lock, so a server left
  by a crashed Slicer is reconnected to or stopped.
- ``backendWidget``: the "Backend server" panel.
"""
