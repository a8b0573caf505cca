"""Evaluates flags against an allot server with the published OpenFeature OFREP provider
(PyPI openfeature-provider-ofrep + openfeature-sdk). Usage: python client.py BASE_URL KEY [MODE]
MODE `flags` (default): prints one JSON object: flag -> {value, variant, reason, errorCode};
MODE `first-variant`: the same, with the header X-Allot-Ofrep-Unassigned: first-variant;
MODE `burst`: evaluates one flag 3 times and prints the 3 results (for --rate-limit)."""
import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

base_url, key = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "flags"
headers = {"Authorization": f"Bearer {key}"}
if mode == "first-variant":
    headers["X-Allot-Ofrep-Unassigned"] = "first-variant"
api.set_provider(OFREPProvider(base_url, headers_factory=lambda: headers))
client = api.get_client()


def plain(x):
    return getattr(x, "value", x) if x is not None else None


def pick(d):
    return {"value": d.value, "variant": d.variant, "reason": plain(d.reason), "errorCode": plain(d.error_code)}


if mode == "burst":
    out = [pick(client.get_string_details("color", "none", EvaluationContext("u1"))) for _ in range(3)]
else:
    out = {
        "banner_alice": pick(client.get_boolean_details("banner", False, EvaluationContext("alice"))),
        "color_u1": pick(client.get_string_details("color", "none", EvaluationContext("u1"))),
        "shape_u1": pick(client.get_object_details("shape", {}, EvaluationContext("u1"))),
        "later_u1": pick(client.get_string_details("later", "none", EvaluationContext("u1"))),
        "nope_u1": pick(client.get_string_details("nope", "fallback", EvaluationContext("u1"))),
        "color_nokey": pick(client.get_string_details("color", "fallback", EvaluationContext())),
    }
print(json.dumps(out))
