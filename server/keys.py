"""Typed keys for what the app shares between its parts."""

from __future__ import annotations

from aiohttp import web

from server.live import LiveStore
from server.metrics import Metrics
from server.phone.lines import PhoneLines
from server.recorder import Recorder
from server.service import RoomService
from server.settings import Settings
from server.storage.base import Storage
from server.tokens import RoomTokens

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
LIVE = web.AppKey("live", LiveStore)
METRICS = web.AppKey("metrics", Metrics)
ROOM_TOKENS = web.AppKey("room_tokens", RoomTokens)
SERVICE = web.AppKey("service", RoomService)
RECORDER = web.AppKey("recorder", Recorder)
PHONE = web.AppKey("phone", PhoneLines)
