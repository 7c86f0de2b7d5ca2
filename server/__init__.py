"""The peerroom server: aiohttp + python-socketio wiring around the pure room machine."""
