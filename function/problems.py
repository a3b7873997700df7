"""Every error a client can see, as one small family rendered in one place (RFC 9457).

`detail` names the field and the rule, never echoes the request back.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from .labels import Outcome

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An answer that is not a success: status, a stable type slug, and why."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    outcome: ClassVar[Outcome | None] = None  # the idempotency outcome it reports, if any

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": f"https://orders.example/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            document["errors"] = self.errors
        return document

    def render(self) -> tuple[bytes, int, dict[str, str]]:
        """The one place an error body is built, for HTTP and CloudEvent replies alike."""
        payload = json.dumps(self.body(), separators=(",", ":")).encode()
        return payload, self.status, {"content-type": PROBLEM_CONTENT_TYPE, **self.headers}


class InvalidBody(Problem):
    slug, title = "invalid-body", "The request body is not a valid order"


class IncompleteBody(Problem):
    """The client stopped sending before the body its framing announced was complete."""

    slug, title = "incomplete-body", "The request body ended early"


class InvalidIdempotencyKey(Problem):
    slug, title = "invalid-idempotency-key", "The idempotency key is not valid"


class MissingIdempotencyKey(Problem):
    slug, title = "missing-idempotency-key", "An Idempotency-Key header is required"


class InvalidProfile(Problem):
    slug, title = "invalid-profile", "The profile is missing or not valid"


class InvalidParameter(Problem):
    slug, title = "invalid-parameter", "A query parameter is not valid"


class InvalidOrderId(Problem):
    slug, title = "invalid-order-id", "The order id in the path is not valid"


class InvalidEvent(Problem):
    slug, title = "invalid-event", "The CloudEvent is not a valid order event"


class Unauthenticated(Problem):
    status, slug, title = 401, "unauthenticated", "A valid bearer token is required"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        challenge = f'Bearer realm="orders", error="{error}"' if error else 'Bearer realm="orders"'
        super().__init__(detail, headers={"www-authenticate": challenge})


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "The token does not allow acting as this profile"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(Problem):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class RequestInFlight(Problem):
    status, slug, title = 409, "request-in-flight", "A request with this key is still in flight"
    outcome = Outcome.CONFLICT

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail, headers={"retry-after": str(retry_after_seconds)})


class BodyTooLarge(Problem):
    status, slug, title = 413, "body-too-large", "The request body is too large"


class UnsupportedMediaType(Problem):
    status, slug, title = 415, "unsupported-media-type", "Unsupported content type"


class FingerprintMismatch(Problem):
    status, slug, title = (
        422,
        "idempotency-key-reused",
        "This idempotency key was used with a different request body",
    )
    outcome = Outcome.MISMATCH


class StoreUnavailable(Problem):
    """PostgreSQL cannot be reached: nothing was written, a retry is safe."""

    status, slug, title = 503, "store-unavailable", "The order store is unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 2) -> None:
        super().__init__(detail, headers={"retry-after": str(retry_after_seconds)})


class InternalError(Problem):
    """A bug: rendered without internals. Tests assert it is never reached."""

    status, slug, title = 500, "internal-error", "Internal error"
