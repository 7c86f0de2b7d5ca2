"""The phone: callers joining live rooms by PIN, and the check-in line.

One domain (:mod:`server.phone.lines`) driven by two transports: the ``/bridge``
Socket.IO namespace (:mod:`server.phone.bridge`, for SIP gateways and other bridges)
and Twilio-style voice webhooks (:mod:`server.phone.twilio_http`).
"""
