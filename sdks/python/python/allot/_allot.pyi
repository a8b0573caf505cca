from os import PathLike
from types import TracebackType
from typing import Any, Dict, Optional, Protocol, Union

JSON = Union[None, bool, int, float, str, list["JSON"], Dict[str, "JSON"]]

class StickyStore(Protocol):
    """The application's stored sticky assignments (``knows`` is optional: default True)."""

    def get(self, unit_type: str, unit: str, experiment: str) -> Optional[str]: ...

class AllotError(Exception):
    """A connection failure, an error answer of the server, a bad snapshot, an offline client."""

class Evaluation:
    """The result of evaluating one experiment for one context."""

    @property
    def experiment(self) -> str: ...
    @property
    def variant(self) -> Optional[str]:
        """The variant, if the unit is assigned one."""
    @property
    def value(self) -> JSON:
        """The variant's value (its declared ``value``, else its name), if any."""
    @property
    def reason(self) -> Optional[str]:
        """allot's reason: ASSIGNED, INCLUDED, STICKY, HOLDOUT, NOT_ALLOCATED, TARGETING_MISS,
        PREREQUISITE_FAILED, NOT_RUNNING, PAUSED, MISSING_UNIT, STICKY_UNAVAILABLE; None for an unknown
        experiment."""
    @property
    def openfeature_reason(self) -> Optional[str]:
        """The OpenFeature reason (SPLIT, TARGETING_MATCH, STATIC, DISABLED, DEFAULT, ERROR)."""
    @property
    def version(self) -> int:
        """The configuration version used (0 before the first snapshot)."""
    @property
    def unit(self) -> Optional[str]:
        """The unit the experiment reads from the context: the unit of its exposures."""

class Client:
    """A client of one ``allot serve``: polls its snapshot, evaluates in process, sends exposures."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        poll_interval: Optional[float] = 5.0,
        ca_cert: Union[str, "PathLike[str]", bytes, None] = None,
        only_ca_cert: bool = False,
        queue_limit: int = 100_000,
        dedup_limit: int = 100_000,
        timeout: float = 10.0,
    ) -> None: ...
    @staticmethod
    def offline(state: str, *, queue_limit: int = 100_000, dedup_limit: int = 100_000) -> "Client":
        """A client of a state file's JSON, without a server (tests, golden files)."""
    def evaluate(
        self,
        experiment: str,
        context: Dict[str, Any],
        sticky: Optional[StickyStore] = None,
        targeting_key: Optional[str] = None,
    ) -> Evaluation: ...
    def buckets(self, context: Dict[str, Any]) -> Dict[str, int]: ...
    def expose(self, unit: str, experiment: str, variant: str) -> None: ...
    def flush(self) -> int: ...
    def refresh(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    @property
    def version(self) -> int: ...
    @property
    def dropped_exposures(self) -> int: ...
    @property
    def deduplicated_exposures(self) -> int: ...
    @property
    def queued_exposures(self) -> int: ...
