"""HTTP errors: ``{error: {code, message}}`` with a fitting status, from one place."""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web

from rooms.errors import ErrorCode

STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.BAD_TOKEN: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NOT_ALLOWED_NOW: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


_CLASSES: Final[dict[int, type[web.HTTPException]]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
    500: web.HTTPInternalServerError,
}


# Said for a failure the server did not expect, over HTTP and in an event's ack.
SOMETHING_WENT_WRONG: Final = "Something went wrong on the server; try again in a minute."


def http_error(code: ErrorCode, message: str) -> web.HTTPException:
    """An exception to raise from a view; aiohttp sends it as the response."""
    cls = _CLASSES[STATUS.get(code, 400)]
    body = json.dumps({"error": {"code": code.value, "message": message}})
    return cls(text=body, content_type="application/json")
