"""peerroom benchmark harness (issue 7).

A single-process load generator (picows websocket client on uvloop) that speaks
Engine.IO v4 / Socket.IO v5 frames directly, the baseline servers it is compared
against (a raw aiohttp broadcast server and a Node socket.io server), and the
runner that drives the four workloads against each target side by side and
writes docs/benchmarks.md. Entry point: ``python -m bench``.
"""
