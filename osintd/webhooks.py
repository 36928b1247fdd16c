"""The webhook receiver: ``POST /webhooks/github`` as an event source.

Owns: signature verification (HMAC-SHA256 over the raw body, constant-time
compare), delivery dedupe by ``X-GitHub-Delivery`` (also the event's id:
``osintd.identity`` merges it with the poll of the same activity), handing
normalised events to the pipeline, and counting the deliveries it skips by
``X-GitHub-Event``.
Must not: log the secret or a signature; block GitHub for long (it gives up
after 10 s, so a busy pipeline gets a 503 and GitHub's redelivery instead).

On a node of a cluster (``cluster.py``) there is no pipeline to send to: the
``keep`` that stores the event (in the cluster's deliveries stream, for the
leader to take) is the whole hand-off, and is what the 202 acknowledges.

Answers: 401 missing or bad signature; 400 unreadable JSON; 202 for events
osintd does not use (ignored) and for accepted ones; 200 for a redelivery
already seen; 503 when the pipeline (or the store) cannot take the event within 5 s.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs
import orjson
import trio

from osintd.httpapi import BodyCheck, Response, problem
from osintd.models import Event
from osintd.normalize import from_webhook

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")

MAX_WEBHOOK_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


class BodySignature:
    """An HMAC-SHA256 of a delivery's body, fed as the body streams in, and the
    signature its sender claims (``X-Hub-Signature-256``).

    Invariant: ``matches`` is asked once, after the whole body went through ``update``.
    """

    def __init__(self, secret: bytes, claimed: str) -> None:
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._claimed = claimed.strip()

    def update(self, chunk: bytes) -> None:
        self._mac.update(chunk)

    def matches(self) -> bool:
        return hmac.compare_digest(("sha256=" + self._mac.hexdigest()).encode(), self._claimed.encode())


@attrs.frozen
class Accepted:
    status: str
    event_id: str | None = None
    reason: str | None = None


@attrs.define
class WebhookStats:
    deliveries: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Deliveries osintd does not use (its type, or its action), by ``X-GitHub-Event``.
    skipped: collections.Counter[str] = attrs.field(factory=collections.Counter)


class WebhookReceiver:
    def __init__(self, secret: bytes, events: trio.MemorySendChannel[Event] | None, now: Callable[[], dt.datetime],
                 dedupe_capacity: int = 10_000, enqueue_timeout: float = 5.0,
                 keep: Callable[[Event], Awaitable[None]] | None = None) -> None:
        """``keep`` stores a delivery's event before it is acknowledged (the state store's
        ``keep_delivery``): GitHub never sends again what was answered 2xx.  ``events``
        None: ``keep`` alone hands the event on (a cluster's node: the leader takes it)."""
        assert events is not None or keep is not None, "a delivery must go somewhere"
        self._secret = secret
        self._keep = keep
        self._events = events
        self._now = now
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._dedupe_capacity = dedupe_capacity
        self._enqueue_timeout = enqueue_timeout
        self.stats = WebhookStats()

    def refuse_unsigned(self, headers: Mapping[str, str]) -> Response | None:
        """401 before the body is read when ``X-Hub-Signature-256`` cannot be a signature
        (missing, or not ``sha256=`` and 64 hex digits); None when it can be checked."""
        signature = headers.get("x-hub-signature-256", "").strip()
        digest = signature.removeprefix("sha256=")
        if signature.startswith("sha256=") and len(digest) == 64 and all(c in _HEX for c in digest.lower()):
            return None
        self.stats.deliveries["unauthorized"] += 1
        log.warning("webhook delivery refused before its body: missing or malformed X-Hub-Signature-256")
        return problem(401, "bad_signature", "X-Hub-Signature-256 is missing or is not sha256= and 64 hex digits")

    def start_signature(self, headers: Mapping[str, str]) -> BodySignature:
        """The signature check for a body about to stream in (``server`` feeds it each chunk)."""
        return BodySignature(self._secret, headers.get("x-hub-signature-256", ""))

    def verify(self, body: bytes, signature: str | None) -> bool:
        if not signature or not signature.startswith("sha256="):
            return False
        check = BodySignature(self._secret, signature)
        check.update(body)
        return check.matches()

    async def handle(self, headers: Mapping[str, str], body: bytes,
                     signature: BodyCheck | None = None) -> Response:
        """``signature``, when given, has seen every byte of ``body`` as it arrived."""
        signed = signature.matches() if signature is not None else self.verify(body, headers.get("x-hub-signature-256"))
        if not signed:
            self.stats.deliveries["unauthorized"] += 1
            log.warning("webhook delivery refused: missing or bad X-Hub-Signature-256")
            return problem(401, "bad_signature", "X-Hub-Signature-256 is missing or does not match the body "
                           "signed with this server's webhook secret")
        kind = headers.get("x-github-event", "")
        delivery = headers.get("x-github-delivery", "")
        if kind == "ping":
            self.stats.deliveries["ping"] += 1
            return Response(200, Accepted("pong"))
        if delivery and delivery in self._seen:
            self.stats.deliveries["duplicate"] += 1
            return Response(200, Accepted("duplicate", reason=f"delivery {delivery} was already received"))
        try:
            payload = orjson.loads(body)  # nesting deeper than 1,024 is a ValueError, not a RecursionError
            if not isinstance(payload, dict):
                raise ValueError("the body is not a JSON object")
            event = from_webhook(kind, payload, self._now(), delivery or None)
        except ValueError as exc:  # bad JSON, or Unusable (a ValueError)
            self.stats.deliveries["unusable"] += 1
            return problem(400, "bad_payload", f"cannot read this {kind or 'unnamed'} delivery: {exc}")
        if event is None:
            self._remember(delivery)
            self.stats.deliveries["ignored"] += 1
            self.stats.skipped[kind or "unnamed"] += 1
            return Response(202, Accepted("ignored", reason=f"osintd does not use {kind} events"))
        event = attrs.evolve(event, source="webhook")
        if self._keep is not None:
            try:
                # Bounded: GitHub gives up after 10 s (a hung Redis must not hold it that long).
                with trio.fail_after(self._enqueue_timeout):
                    await self._keep(event)
            except Exception as exc:  # disk full, I/O error, Redis away: unacknowledged, so GitHub redelivers
                self.stats.deliveries["unstored"] += 1
                log.error("webhook delivery %s not stored (%s): answered 503 for GitHub to redeliver",
                          delivery, str(exc) or type(exc).__name__)
                return problem(503, "state_unwritable", "this server cannot store the delivery now; "
                               "GitHub may redeliver it later", ("Retry-After", "60"))
        if self._events is None:  # stored is handed on: the cluster's leader takes it from there
            self._remember(delivery)
            self.stats.deliveries["accepted"] += 1
            return Response(202, Accepted("accepted", event.event_id))
        with trio.move_on_after(self._enqueue_timeout):
            await self._events.send(event)
            self._remember(delivery)
            self.stats.deliveries["accepted"] += 1
            return Response(202, Accepted("accepted", event.event_id))
        self.stats.deliveries["busy"] += 1
        return problem(503, "busy", "the pipeline is full; GitHub may redeliver later", ("Retry-After", "10"))

    def _remember(self, delivery: str) -> None:
        if not delivery:
            return
        self._seen[delivery] = None
        while len(self._seen) > self._dedupe_capacity:
            self._seen.popitem(last=False)
