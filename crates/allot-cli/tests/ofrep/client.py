"""Evaluates flags against an allot server with the published OpenFeature OFREP provider
(PyPI openfeature-provider-ofrep + openfeature-sdk). Usage: python client.py BASE_URL KEY
Prints one JSON object: flag -> {value, variant, reason, errorCode}."""
import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

base_url, key = sys.argv[1], sys.argv[2]
api.set_provider(OFREPProvider(base_url, headers_factory=lambda: {"Authorization": f"Bearer {key}"}))
client = api.get_client()


def plain(x):
    return getattr(x, "value", x) if x is not None else None


def pick(d):
    return {"value": d.value, "variant": d.variant, "reason": plain(d.reason), "errorCode": plain(d.error_code)}


out = {
    "banner_alice": pick(client.get_boolean_details("banner", False, EvaluationContext("alice"))),
    "color_u1": pick(client.get_string_details("color", "none", EvaluationContext("u1"))),
    "shape_u1": pick(client.get_object_details("shape", {}, EvaluationContext("u1"))),
    "later_u1": pick(client.get_string_details("later", "none", EvaluationContext("u1"))),
    "nope_u1": pick(client.get_string_details("nope", "fallback", EvaluationContext("u1"))),
    "color_nokey": pick(client.get_string_details("color", "fallback", EvaluationContext())),
}
print(json.dumps(out))
