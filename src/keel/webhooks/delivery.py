"""One run of a delivery job: signed POSTs with in-run retries, then a durable decision.

Where retries happen (docs/jobs.md): a run makes up to WEBHOOK_ATTEMPTS_PER_RUN attempts with
tenacity (exponential backoff with jitter, or the receiver's Retry-After when it is short) for
connect errors, timeouts, 5xx, 408 and 429; any other answer ends the run. If the run ends
without success, the next run is scheduled in PostgreSQL (`next_attempt_at`, exponential, up to
WEBHOOK_MAX_ATTEMPTS in all) and the outbox relay enqueues it when due. Short blips are absorbed
inside a run; long outages wait in the database, not in a worker slot or in Redis, so a worker
restart, a Redis flush or a long breaker cool-down loses nothing.

Every attempt is written before the request is sent (and completed after), so an attempt cut by
a crash still shows in the log. The row's `enqueue_count` is this job's ticket: every write is
conditional on it, so a stale job (a row rescheduled or redelivered since) changes nothing.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx
import orjson
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from keel.resources import Resources
from keel.webhooks import repository as repo
from keel.webhooks import signing, ssrf
from keel.webhooks.breaker import CircuitBreaker

log = structlog.get_logger(__name__)

RESPONSE_SNIPPET_BYTES = 512
INTERRUPTED = "no outcome recorded: the worker stopped during this attempt"


class Transient(Exception):
    """Worth another attempt: connection error, timeout, 5xx, 408, 429."""

    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.retry_after = retry_after


class Permanent(Exception):
    """Retrying cannot help: 4xx (other than 408/429), a redirect, a forbidden address."""


class BreakerOpen(Exception):
    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"circuit breaker open for {wait_seconds:.1f}s")
        self.wait_seconds = wait_seconds


class Stale(Exception):
    """The row moved on (rescheduled, redelivered, deleted): this job has nothing to do."""


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: str
    status: str  # succeeded | failed | rescheduled | stale
    attempts: int
    detail: str | None = None

    def as_result(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "status": self.status,
            "attempts": self.attempts,
            "detail": self.detail,
        }


class AttemptResult(NamedTuple):
    """What one attempt wrote to its log row, and the exception that ends it (None: success)."""

    status_code: int | None
    error: str | None
    failure: Transient | Permanent | None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), 86_400.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), 86_400.0)


def describe(error: BaseException) -> str:
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"[:500]


def breaker_key(url: httpx.URL) -> str:
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


def run_backoff(settings_base: float, settings_max: float, attempts: int) -> float:
    """Delay before the next run: base * 2^(runs so far), capped, with full jitter on top half."""
    exponent = max(0, attempts - 1)
    delay: float = min(settings_max, settings_base * 2.0 ** min(exponent, 30))
    jitter: float = random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security
    return delay / 2 + jitter


class DeliveryRun:
    """One run of the delivery job for one delivery (`deliver`), and its state."""

    def __init__(
        self, resources: Resources, breaker: CircuitBreaker, delivery_id: uuid.UUID, ticket: int
    ) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.breaker = breaker
        self.delivery_id = delivery_id
        self.ticket = ticket
        self.attempts = 0

    async def run(self) -> Outcome:
        async with self.resources.db.transaction() as db:
            task = await repo.load_task(db, self.delivery_id)
        if task is None or task.status != "pending" or task.enqueue_count != self.ticket:
            return self._outcome("stale", None if task is None else task.attempts)
        self.attempts = task.attempts
        if not task.is_active:
            return await self._finish("failed", "the endpoint is disabled")
        try:
            url = ssrf.parse_url(task.url, self.settings)
        except ssrf.UnsafeUrl as error:
            return await self._finish("failed", f"blocked: {error}")
        remaining = self.settings.webhook_max_attempts - task.attempts
        if remaining <= 0:
            return await self._finish("failed", "no attempts left")
        return await self._attempt_until_decided(task, url, remaining)

    async def _attempt_until_decided(
        self, task: repo.DeliveryTask, url: httpx.URL, remaining: int
    ) -> Outcome:
        """This run's attempts (at most `remaining`), then the row's fate: done or next run."""
        body = orjson.dumps(task.payload)
        per_run = min(self.settings.webhook_attempts_per_run, remaining)
        try:
            async for attempt in self._retrying(per_run):
                with attempt:
                    await self._attempt(task, url, body)
        except Stale:
            return self._outcome("stale", self.attempts)
        except BreakerOpen as error:
            # Not an attempt: nothing was sent. Due again when the breaker may half-open.
            return await self._reschedule(error.wait_seconds, str(error))
        except Permanent as error:
            return await self._finish("failed", str(error))
        except Transient as error:
            return await self._after_transient(error)
        return await self._finish("succeeded", None)

    def _retrying(self, per_run: int) -> AsyncRetrying:
        return AsyncRetrying(
            stop=self._stop(per_run),
            wait=self._wait(),
            retry=retry_if_exception_type(Transient),
            reraise=True,
        )

    async def _after_transient(self, error: Transient) -> Outcome:
        """The run ended on a transient failure: a later run, unless no attempts are left."""
        if self.attempts >= self.settings.webhook_max_attempts:
            return await self._finish("failed", error.error)
        delay = run_backoff(
            self.settings.webhook_run_backoff_base_seconds,
            self.settings.webhook_run_backoff_max_seconds,
            self.attempts,
        )
        return await self._reschedule(max(delay, error.retry_after or 0.0), None)

    def _stop(self, per_run: int) -> Any:
        limit = self.settings.webhook_retry_max_seconds

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= per_run:
                return True
            error = state.outcome.exception() if state.outcome else None
            # A receiver asking for a long pause gets it from the scheduler, not in this run.
            return isinstance(error, Transient) and (error.retry_after or 0) > limit

        return stop

    def _wait(self) -> Any:
        exponential = wait_exponential_jitter(
            multiplier=self.settings.webhook_retry_base_seconds,
            max=self.settings.webhook_retry_max_seconds,
            jitter=self.settings.webhook_retry_base_seconds,
        )

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, Transient) and error.retry_after is not None:
                return error.retry_after
            return float(exponential(state))

        return wait

    async def _attempt(self, task: repo.DeliveryTask, url: httpx.URL, body: bytes) -> None:
        """One attempt, logged before it is sent and completed after; raises its failure."""
        host = breaker_key(url)
        wait = await self.breaker.wait_seconds(host, task.owner_id)
        if wait > 0:
            raise BreakerOpen(wait)
        started_at = datetime.now(UTC)
        async with self.resources.db.transaction() as db:
            attempt_id = await repo.start_attempt(
                db, self.delivery_id, self.ticket, started_at, INTERRUPTED
            )
        if attempt_id is None:
            raise Stale
        self.attempts += 1
        started = time.perf_counter()
        result = await self._send_and_judge(task, body, host)
        duration_ms = round((time.perf_counter() - started) * 1000)
        async with self.resources.db.transaction() as db:
            await repo.complete_attempt(
                db, attempt_id, self.delivery_id, duration_ms, result.status_code, result.error
            )
        log.info(
            "webhook attempt",
            delivery_id=str(self.delivery_id),
            attempt=self.attempts,
            status_code=result.status_code,
            duration_ms=duration_ms,
            error=result.error,
        )
        if result.failure is not None:
            raise result.failure

    async def _send_and_judge(
        self, task: repo.DeliveryTask, body: bytes, host: str
    ) -> AttemptResult:
        """Send the request and judge the answer, telling the breakers how it went."""
        try:
            status_code, snippet, retry_after = await self._send(task, body)
        except ssrf.UnsafeUrl as exc:
            error = f"blocked: {exc}"
            return AttemptResult(None, error, Permanent(error))
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            error = describe(exc)
            failure = Transient(error)
            await self.breaker.record_failure(host, task.owner_id)
            return AttemptResult(None, error, failure)
        return await self._judge_answer(task, host, status_code, snippet, retry_after)

    async def _judge_answer(
        self,
        task: repo.DeliveryTask,
        host: str,
        status_code: int,
        snippet: str,
        retry_after: float | None,
    ) -> AttemptResult:
        """2xx succeeds; 408, 429 and 5xx are worth another attempt; any other answer is final."""
        if 200 <= status_code < 300:
            await self.breaker.record_success(host, task.owner_id)
            return AttemptResult(status_code, None, None)
        error = f"HTTP {status_code}: {snippet}".strip()
        if status_code in (408, 429) or status_code >= 500:
            failure = Transient(error, retry_after)
            await self.breaker.record_failure(host, task.owner_id)
            return AttemptResult(status_code, error, failure)
        # The host answered: it is up, whatever it thinks of this request.
        await self.breaker.record_success(host, task.owner_id)
        return AttemptResult(status_code, error, Permanent(error))

    async def _send(self, task: repo.DeliveryTask, body: bytes) -> tuple[int, str, float | None]:
        settings = self.settings
        budget = settings.webhook_timeout_seconds
        async with asyncio.timeout(budget):
            # Resolved and checked again now (DNS rebinding), then connected to that address.
            target = await ssrf.resolve_target(task.url, settings)
            headers = signing.signed_headers(task.secrets, str(task.id), body)
            headers["Host"] = target.host_header
            extensions: dict[str, Any] = {}
            if target.url.scheme == "https":
                extensions["sni_hostname"] = target.url.host
            request = self.resources.http.build_request(
                "POST",
                target.pinned_url,
                content=body,
                headers=headers,
                extensions=extensions,
                timeout=httpx.Timeout(budget, connect=min(settings.http_connect_timeout, budget)),
            )
            response = await self.resources.http.send(request, stream=True)
            try:
                snippet = await _read_snippet(response)
            finally:
                await response.aclose()
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return response.status_code, snippet, retry_after

    async def _finish(self, status: str, error: str | None) -> Outcome:
        async with self.resources.db.transaction() as db:
            done = await repo.finish(db, self.delivery_id, self.ticket, status, error)
        if not done:
            return self._outcome("stale", self.attempts)
        return self._outcome(status, self.attempts, error)

    async def _reschedule(self, delay: float, error: str | None) -> Outcome:
        async with self.resources.db.transaction() as db:
            done = await repo.reschedule(db, self.delivery_id, self.ticket, delay, error)
        if not done:
            return self._outcome("stale", self.attempts)
        return self._outcome("rescheduled", self.attempts, f"next run in {delay:.1f}s")

    def _outcome(self, status: str, attempts: int | None, detail: str | None = None) -> Outcome:
        return Outcome(str(self.delivery_id), status, attempts or 0, detail)


async def _read_snippet(response: httpx.Response) -> str:
    """The start of the answer, for the attempt log; never the whole of a large body."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_SNIPPET_BYTES:
            break
    return b"".join(chunks)[:RESPONSE_SNIPPET_BYTES].decode("utf-8", "replace")


async def deliver(
    resources: Resources, delivery_id: uuid.UUID, ticket: int, breaker: CircuitBreaker | None = None
) -> Outcome:
    settings = resources.settings
    breaker = breaker or CircuitBreaker(
        resources.redis,
        settings.webhook_breaker_threshold,
        settings.webhook_breaker_cooldown_seconds,
    )
    return await DeliveryRun(resources, breaker, delivery_id, ticket).run()
