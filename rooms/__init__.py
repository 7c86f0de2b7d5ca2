"""The room as a pure state machine.

Nothing in this package awaits, reads a clock, draws random numbers or touches a socket:
time and fresh ids come in as arguments, so every rule is a fast unit test. The server
feeds commands to :func:`rooms.machine.apply` and turns the events it returns into
Socket.IO emits.
"""
