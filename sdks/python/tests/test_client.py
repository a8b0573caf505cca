"""allot.Client against a real `allot serve`: evaluation, polling, sticky stores, exposures."""

from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import pytest

import allot
from conftest import FRESH, Serve


def until(what: str, ok, seconds: float = 30.0) -> None:
    """Waits (bounded) for a condition; fails naming it."""
    end = time.monotonic() + seconds
    while not ok():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.05)


def test_evaluates_as_the_server(serve: Serve, evaluator: str) -> None:
    with allot.Client(serve.url, evaluator, poll_interval=None) as c:
        assert c.version == 1
        for u in range(50):
            ctx = {"user_id": f"u{u}"}
            st, want = serve.call("POST", "/api/v1/evaluate", {"context": ctx, "experiments": ["banner", "half"]})
            assert st == 200, want
            for exp in ["banner", "half"]:
                e = c.evaluate(exp, ctx)
                w = want["assignments"][exp]
                assert (e.variant, e.value, e.reason) == (w["variant"], w["value"], w["reason"]), (u, exp)
                assert e.version == 1 and e.experiment == exp
                assert e.unit == f"u{u}"
        e = c.evaluate("banner", {"user_id": "u1"})
        assert isinstance(e.value, bool) and e.variant in ("control", "treatment")
        assert e.openfeature_reason == "SPLIT"
        # Unknown experiment; no unit; OpenFeature's targetingKey.
        assert c.evaluate("nope", {"user_id": "u1"}).reason is None
        assert c.evaluate("banner", {}).reason == "MISSING_UNIT"
        assert c.evaluate("banner", {}, targeting_key="u1").variant == e.variant
        assert c.evaluate("banner", {"user_id": "u1"}, targeting_key="other").variant == e.variant
        assert "Evaluation(" in repr(e)
        # Bad contexts are errors naming the field, never a crash.
        with pytest.raises(TypeError, match="context"):
            c.evaluate("banner", ["u1"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="context.when"):
            c.evaluate("banner", {"user_id": "u1", "when": object()})
        with pytest.raises(ValueError, match="context.x"):
            c.evaluate("banner", {"user_id": "u1", "x": float("nan")})


def test_bad_connections_raise_allot_error(serve: Serve, evaluator: str) -> None:
    with pytest.raises(allot.AllotError, match="401"):
        allot.Client(serve.url, "not-a-key", poll_interval=None)
    with pytest.raises(ValueError, match="poll_interval"):
        allot.Client(serve.url, evaluator, poll_interval=-1)
    with pytest.raises(ValueError, match="ca_cert"):
        allot.Client(serve.url, evaluator, ca_cert="/nonexistent/ca.pem")


def test_polling_picks_up_a_new_version(serve: Serve, evaluator: str) -> None:
    with allot.Client(serve.url, evaluator, poll_interval=0.1) as c:
        assert c.evaluate("fresh", {"user_id": "u1"}).reason is None
        v = serve.put_config(FRESH)
        assert v == 2
        until("the client polls version 2", lambda: c.version == 2)
        e = c.evaluate("fresh", {"user_id": "u1"})
        assert (e.variant, e.reason, e.version) == ("x", "ASSIGNED", 2)
    # Without polling, refresh() does it (and says whether anything changed).
    with allot.Client(serve.url, evaluator, poll_interval=None) as c:
        assert c.version == 2
        assert c.refresh() is False


class Stored:
    """A sticky store as an application keeps one."""

    def __init__(self, rows: Dict[Tuple[str, str, str], str], unknown: Optional[set[str]] = None) -> None:
        self.rows = rows
        self.unknown = unknown or set()
        self.calls = 0

    def get(self, unit_type: str, unit: str, experiment: str) -> Optional[str]:
        self.calls += 1
        return self.rows.get((unit_type, unit, experiment))

    def knows(self, unit_type: str, unit: str) -> bool:
        return unit not in self.unknown


def test_sticky_stores_are_honoured_and_never_contradicted(serve: Serve, evaluator: str) -> None:
    with allot.Client(serve.url, evaluator, poll_interval=None) as c:
        # No store: a sticky experiment cannot be decided here.
        e = c.evaluate("onboarding", {"user_id": "u1"})
        assert (e.variant, e.reason) == (None, "STICKY_UNAVAILABLE")
        fresh = {u: c.evaluate("onboarding", {"user_id": f"u{u}"}, sticky=Stored({})).variant for u in range(100)}
        assert all(v in ("control", "treatment") for v in fresh.values())
        # Each unit stored with the variant it would NOT get now: the stored one wins, always.
        flipped = {("user", f"u{u}", "onboarding"): ("control" if v == "treatment" else "treatment") for u, v in fresh.items()}
        # u7: no row, and the store cannot tell (its database is down, say).
        store = Stored({k: v for k, v in flipped.items() if k[1] != "u7"}, unknown={"u7"})
        for u in range(100):
            e = c.evaluate("onboarding", {"user_id": f"u{u}"}, sticky=store)
            if u == 7:
                assert (e.variant, e.reason) == (None, "STICKY_UNAVAILABLE")
            else:
                assert (e.variant, e.reason) == (flipped[("user", f"u{u}", "onboarding")], "STICKY"), u
                assert e.openfeature_reason == "STATIC"
        assert store.calls > 0
        # Non-sticky experiments never ask the store.
        before = store.calls
        c.evaluate("banner", {"user_id": "u1"}, sticky=store)
        assert store.calls == before

        # A store that fails: its error, never an answer.
        class Broken:
            def get(self, unit_type: str, unit: str, experiment: str) -> Optional[str]:
                raise RuntimeError("the store is down")

        with pytest.raises(RuntimeError, match="the store is down"):
            c.evaluate("onboarding", {"user_id": "u1"}, sticky=Broken())

        class Wrong:
            def get(self, unit_type: str, unit: str, experiment: str) -> int:
                return 3

        with pytest.raises(TypeError, match="variant name"):
            c.evaluate("onboarding", {"user_id": "u1"}, sticky=Wrong())


def test_exposures_reach_the_server_deduplicated(serve: Serve, evaluator: str) -> None:
    with allot.Client(serve.url, evaluator, poll_interval=None) as c:
        e = c.evaluate("banner", {"user_id": "u1"})
        assert e.unit and e.variant
        for _ in range(5):
            c.expose(e.unit, "banner", e.variant)
        c.expose("u2", "banner", "control")
        assert c.deduplicated_exposures == 4
        assert c.queued_exposures == 2
        assert c.flush() == 2
        assert c.queued_exposures == 0
        c.expose("u1", "banner", e.variant)  # the same day again: not queued
        assert c.flush() == 0
    assert serve.exposures() == sorted([("u1", "banner", e.variant), ("u2", "banner", "control")])
    # close() sends what is queued.
    with allot.Client(serve.url, evaluator, poll_interval=None) as c:
        c.expose("u3", "half", "a")
    assert ("u3", "half", "a") in serve.exposures()


def test_close_while_other_threads_call_the_client(serve: Serve, evaluator: str) -> None:
    """close() racing refresh/flush/expose/evaluate on other threads: each call succeeds or raises
    AllotError ("closed"), never a PanicException from a runtime shut down under it."""
    import threading

    for _ in range(5):
        c = allot.Client(serve.url, evaluator, poll_interval=0.01)
        errors: list[BaseException] = []
        stop = threading.Event()

        def hammer(i: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    c.expose(f"t{i}-{n}", "banner", "control")
                    c.evaluate("banner", {"user_id": f"t{i}"})
                    c.refresh() if n % 2 else c.flush()
                except allot.AllotError:
                    pass
                except BaseException as e:  # PanicException derives from BaseException
                    errors.append(e)
                    return

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        c.close()
        time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        with pytest.raises(allot.AllotError, match="closed"):
            c.refresh()
        assert c.evaluate("banner", {"user_id": "u1"}).reason == "ASSIGNED"


def test_an_https_server_with_a_private_ca() -> None:
    """ca_cert (a path, or the PEM's bytes) makes the connection; without it the server's
    certificate is not trusted. ALLOT_TLS_DIR (set by crates/allot-cli/tests/it/python_sdk.rs)
    holds ca.pem and the server's certificate for localhost."""
    import os
    import pathlib

    from conftest import ADMIN

    d = os.environ.get("ALLOT_TLS_DIR")
    if not d:
        pytest.skip("ALLOT_TLS_DIR is not set (the Rust harness sets it)")
    s = Serve(tls_dir=d)
    try:
        ca = pathlib.Path(d, "ca.pem")
        with allot.Client(s.url, ADMIN, poll_interval=None, ca_cert=str(ca)) as c:
            assert c.version == 1
            e = c.evaluate("banner", {"user_id": "u1"})
            assert e.reason == "ASSIGNED" and e.variant in ("control", "treatment")
            c.expose("u1", "banner", e.variant)
            assert c.flush() == 1
        with allot.Client(s.url, ADMIN, poll_interval=None, ca_cert=ca.read_bytes(), only_ca_cert=True) as c:
            assert c.version == 1
        with pytest.raises(allot.AllotError):
            allot.Client(s.url, ADMIN, poll_interval=None)
    finally:
        s.stop()


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    s = Serve()
    key = s.key("evaluator")
    c = allot.Client(s.url, key, poll_interval=None, queue_limit=3, timeout=2.0)
    s.stop()  # the server is down from here on
    for u in range(5):
        c.expose(f"u{u}", "banner", "control")
    assert (c.queued_exposures, c.dropped_exposures) == (3, 2)
    with pytest.raises(allot.AllotError):
        c.flush()
    # Kept for the next try, within the bound.
    assert (c.queued_exposures, c.dropped_exposures) == (3, 2)
    # Evaluation keeps answering from the last snapshot.
    assert c.evaluate("banner", {"user_id": "u1"}).variant in ("control", "treatment")
    c.close()


def test_an_offline_client_evaluates_a_state_file(spec) -> None:
    c = allot.Client.offline((spec / "assign" / "allot.state.json").read_text())
    assert c.version > 0
    with pytest.raises(allot.AllotError, match="offline"):
        c.flush()
    with pytest.raises(allot.AllotError, match="offline"):
        c.refresh()
    c.expose("u1", "price-test", "control")
    assert c.queued_exposures == 1
    with pytest.raises(allot.AllotError, match="bad snapshot"):
        allot.Client.offline("{}")
