"""OpenFeature for allot: an in-process provider and the exposure hook.

``AllotProvider`` evaluates flags (experiments) in process with an ``allot.Client``, answering as
allot's OFREP endpoint does: the OpenFeature reason of allot's reason, the code default (no
variant) for a unit the experiment does not assign, allot's reason, the experiment, the unit,
the variant and the configuration version in ``flag_metadata``.

``ExposureHook`` logs an exposure when the application *uses* a flag (OpenFeature's ``after``
stage), only for answers that carry a variant, never blocking evaluation:

- ``ExposureHook(client)`` with an ``allot.Client`` (and ``AllotProvider``): through the SDK's
  deduplicated, bounded batching to ``POST /api/v1/exposures``;
- ``ExposureHook("https://allot.example", key)`` with any provider, such as the published OFREP
  provider: batched to ``POST /ofrep/v1/exposures``, which re-evaluates each flag and records it
  only when the unit is assigned exactly that variant. Deduplicated per (targetingKey, flag,
  variant, UTC day); a bounded queue whose overflow is counted in ``dropped_exposures``.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagResolutionDetails, FlagType, Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import AbstractProvider, Metadata

from ._allot import Client

if TYPE_CHECKING:
    from ._allot import StickyStore

__all__ = ["AllotProvider", "ExposureHook"]

log = logging.getLogger("allot.openfeature")

#: Most flags in one ``POST /ofrep/v1/exposures``.
MAX_FLAGS_PER_REQUEST = 100


def _typed(kind: FlagType, value: Any) -> Tuple[bool, Any]:
    """Whether ``value`` is of the flag type asked for, and the value as that type."""
    if kind == FlagType.BOOLEAN:
        return isinstance(value, bool), value
    if kind == FlagType.STRING:
        return isinstance(value, str), value
    if kind == FlagType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind == FlagType.FLOAT:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    return isinstance(value, (dict, list)), value


class AllotProvider(AbstractProvider):
    """An OpenFeature provider evaluating allot experiments in process with ``client``.

    ``sticky``: the application's sticky store, passed to every evaluation (see
    ``allot.Client.evaluate``).
    """

    def __init__(self, client: Client, sticky: "Optional[StickyStore]" = None) -> None:
        super().__init__()
        self.client = client
        self.sticky = sticky

    def get_metadata(self) -> Metadata:
        return Metadata(name="allot")

    def shutdown(self) -> None:
        self.client.close()

    def _resolve(
        self, kind: FlagType, flag_key: str, default: Any, ctx: Optional[EvaluationContext]
    ) -> FlagResolutionDetails[Any]:
        attributes: Dict[str, Any] = dict(ctx.attributes) if ctx is not None else {}
        targeting_key = ctx.targeting_key if ctx is not None else None
        try:
            ev = self.client.evaluate(flag_key, attributes, self.sticky, targeting_key)
        except (TypeError, ValueError) as e:
            return FlagResolutionDetails(
                default, error_code=ErrorCode.INVALID_CONTEXT, error_message=str(e), reason=Reason.ERROR
            )
        if ev.reason is None:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"flag `{flag_key}` was not found",
                reason=Reason.ERROR,
            )
        meta: Dict[str, Union[bool, int, float, str]] = {
            "allotReason": ev.reason,
            "experiment": flag_key,
            "configVersion": ev.version,
        }
        if ev.unit is not None:
            meta["unit"] = ev.unit
        if ev.reason == "MISSING_UNIT":
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.TARGETING_KEY_MISSING,
                error_message=f"the context has no targetingKey (nor the unit attribute of `{flag_key}`)",
                reason=Reason.ERROR,
                flag_metadata=meta,
            )
        if ev.reason == "STICKY_UNAVAILABLE":
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.GENERAL,
                error_message="the unit's sticky assignments are unknown to the sticky store: use the default",
                reason=Reason.ERROR,
                flag_metadata=meta,
            )
        reason = Reason(ev.openfeature_reason)
        if ev.variant is None:
            # The code default: the application's own value, the reason kept, no variant.
            return FlagResolutionDetails(default, reason=reason, flag_metadata=meta)
        meta["variant"] = ev.variant
        ok, value = _typed(kind, ev.value)
        if not ok:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"flag `{flag_key}` serves {type(ev.value).__name__}, not {kind.value}",
                reason=Reason.ERROR,
                flag_metadata=meta,
            )
        return FlagResolutionDetails(value, reason=reason, variant=ev.variant, flag_metadata=meta)

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(FlagType.BOOLEAN, flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(FlagType.STRING, flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(FlagType.INTEGER, flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: Optional[EvaluationContext] = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(FlagType.FLOAT, flag_key, default_value, evaluation_context)

    def resolve_object_details(  # type: ignore[override]
        self,
        flag_key: str,
        default_value: Union[Sequence[Any], Mapping[str, Any]],
        evaluation_context: Optional[EvaluationContext] = None,
    ) -> FlagResolutionDetails[Any]:
        return self._resolve(FlagType.OBJECT, flag_key, default_value, evaluation_context)


class ExposureHook(Hook):
    """Logs an exposure when the application uses a flag that carries a variant.

    ``target``: an ``allot.Client`` (exposures through the SDK's batching), or the base URL of
    ``allot serve`` with an evaluator ``key`` (exposures to ``POST /ofrep/v1/exposures``, sent by a
    background thread every ``flush_interval`` seconds and when ``batch`` wait).
    """

    def __init__(
        self,
        target: Union[Client, str],
        key: Optional[str] = None,
        *,
        flush_interval: float = 1.0,
        batch: int = 100,
        queue_limit: int = 10_000,
        dedup_limit: int = 100_000,
        timeout: float = 10.0,
    ) -> None:
        self._client: Optional[Client] = None
        self._lock = threading.Lock()
        self._queue: List[Tuple[str, str, str]] = []
        self._seen: set[Tuple[str, str, str, str]] = set()
        self._dropped = 0
        self._deduplicated = 0
        self._not_recorded = 0
        self._queue_limit = queue_limit
        self._dedup_limit = dedup_limit
        self._batch = max(1, batch)
        self._timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if isinstance(target, Client):
            self._client = target
            return
        if not key:
            raise ValueError("key: an evaluator key is needed to send exposures to allot serve")
        self._url = target.rstrip("/") + "/ofrep/v1/exposures"
        self._key = key
        self._interval = flush_interval
        self._thread = threading.Thread(target=self._run, name="allot-exposures", daemon=True)
        self._thread.start()

    # The hook: OpenFeature calls it after every successful evaluation.
    def after(
        self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints
    ) -> None:
        variant = details.variant
        if not variant or details.error_code is not None:
            return
        flag = hook_context.flag_key
        ctx = hook_context.evaluation_context
        if self._client is not None:
            # Only answers of allot's provider name their unit; anything else (another
            # provider's flags) is not an exposure of this client's experiments.
            unit = (details.flag_metadata or {}).get("unit")
            if isinstance(unit, str) and unit:
                self._client.expose(unit, flag, variant)
            return
        context: Dict[str, Any] = dict(ctx.attributes)
        if ctx.targeting_key is not None:
            context["targetingKey"] = ctx.targeting_key
        text = json.dumps(context, sort_keys=True, default=str)
        # The whole context is the unit's identity here (an experiment may read another
        # attribute than targetingKey).
        who = text
        day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        seen = (day, who, flag, variant)
        with self._lock:
            if self._dedup_limit > 0:
                if seen in self._seen:
                    self._deduplicated += 1
                    return
                if len(self._seen) >= self._dedup_limit:
                    self._seen.clear()
                self._seen.add(seen)
            if len(self._queue) >= self._queue_limit:
                self._dropped += 1
                return
            self._queue.append((text, flag, variant))
            full = len(self._queue) >= self._batch
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - logged; the exposures stay queued
                log.warning("sending exposures to allot failed: %s", e)

    def _post(self, context: str, flags: List[Tuple[str, str]]) -> Dict[str, Any]:
        body = '{"context": %s, "flags": %s}' % (
            context,
            json.dumps([{"key": k, "variant": v} for k, v in flags]),
        )
        req = urllib.request.Request(
            self._url,
            data=body.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=self._timeout) as res:
            answer: Dict[str, Any] = json.loads(res.read())
            return answer

    def _requeue(self, requests: List[Tuple[str, List[Tuple[str, str]]]]) -> None:
        """Puts unsent requests back at the head of the queue, within its bound."""
        rest = [(c, f, v) for c, fs in requests for f, v in fs]
        with self._lock:
            self._queue[0:0] = rest
            over = len(self._queue) - self._queue_limit
            if over > 0:
                del self._queue[self._queue_limit :]
                self._dropped += over

    def flush(self) -> int:
        """Sends what is queued now; returns how many flags were sent. With an ``allot.Client``,
        that client's ``flush``. On failure the unsent ones are queued again (within the bound)
        and the error is raised."""
        if self._client is not None:
            return self._client.flush()
        with self._lock:
            pending, self._queue = self._queue, []
        # One request per context, at most 100 flags each, in the order they were used.
        groups: Dict[str, List[Tuple[str, str]]] = {}
        for context, flag, variant in pending:
            groups.setdefault(context, []).append((flag, variant))
        requests = [
            (context, flags[i : i + MAX_FLAGS_PER_REQUEST])
            for context, flags in groups.items()
            for i in range(0, len(flags), MAX_FLAGS_PER_REQUEST)
        ]
        sent = 0
        for n, (context, flags) in enumerate(requests):
            try:
                answer = self._post(context, flags)
            except urllib.error.HTTPError as e:
                if e.code not in (400, 413, 422):
                    self._requeue(requests[n:])
                    raise
                # The request itself is refused (bad context, too large, bad flags): sending it
                # again would fail again and hold back every request behind it. Dropped, counted.
                with self._lock:
                    self._dropped += len(flags)
                continue
            except (urllib.error.URLError, OSError, ValueError):
                self._requeue(requests[n:])
                raise
            sent += len(flags)
            not_recorded = sum(1 for f in answer.get("flags", []) if not f.get("recorded"))
            if not_recorded:
                with self._lock:
                    self._not_recorded += not_recorded
        return sent

    def close(self) -> None:
        """Stops the background thread and sends what is queued (best effort)."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=self._timeout)
            self._thread = None
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001
            log.warning("sending the last exposures to allot failed: %s", e)

    @property
    def dropped_exposures(self) -> int:
        """Exposures dropped because the queue was full (the SDK's counter with a Client)."""
        if self._client is not None:
            return self._client.dropped_exposures
        return self._dropped

    @property
    def deduplicated_exposures(self) -> int:
        """Uses not queued because the same (unit, flag, variant, day) was."""
        if self._client is not None:
            return self._client.deduplicated_exposures
        return self._deduplicated

    @property
    def queued_exposures(self) -> int:
        """Exposures waiting to be sent."""
        if self._client is not None:
            return self._client.queued_exposures
        with self._lock:
            return len(self._queue)

    @property
    def not_recorded(self) -> int:
        """Flags sent to ``/ofrep/v1/exposures`` that the server did not record (the unit is not
        assigned that variant, or the flag is unknown)."""
        return self._not_recorded
