"""allot's Python SDK: in-process evaluation of allot experiments.

Native bindings over allot's Rust SDK (``crates/allot-sdk``): the snapshot of ``allot serve`` is
fetched and polled with ETag, compiled and evaluated by the same Rust code as the server, and
exposures are deduplicated and sent in batches from a bounded queue. See ``allot.openfeature``
for the OpenFeature provider and the exposure hook.
"""

from ._allot import AllotError, Client, Evaluation

__all__ = ["AllotError", "Client", "Evaluation"]
