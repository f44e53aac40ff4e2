"""Schemathesis hooks for scripts/check_openapi.sh (loaded through SCHEMATHESIS_HOOKS).

`strata_positive_data_acceptance` replaces schemathesis's `positive_data_acceptance`
check ("a request valid by the schema is accepted"). The OpenAPI document states every
rule that can be checked on a request alone (strata/src/openapi_rules.rs); the rules below
depend on what is stored, or count UTF-8 bytes where JSON Schema counts characters, so a
schema-valid request can break them. The check lets a 400 through only when its message is
one of these rules; any other refusal of a schema-valid request still fails the run.
"""

import re

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

DATA_DEPENDENT_RULES = [
    # The collection's dimension and metric (shared/types CollectionDef::validate_vector).
    r"vector has dimension \d+, collection .* expects \d+",
    r"a zero vector has no direction; cosine needs a non-zero vector",
    # Base64 can encode NaN and infinities, which a JSON number cannot be.
    r"vector value at index \d+ is .*; values must be finite",
    # The collection's shard count (bulk, scan) and the shard each id hashes to (bulk).
    r"collection .* has no shard \d+",
    r"row .* belongs to shard \d+, not \d+",
    # Ids must be unique within a request: JSON Schema's uniqueItems compares whole rows.
    r"id .* appears more than once in the (batch|request)",
    # The types a collection's attributes took from their first value or declaration.
    r"attribute .* has type \S+ in this collection; got a value of type",
    r"filter\S*: attribute .* is an? \S+(, the operand is|; \$contains applies only|, which has no order)",
    # A cursor the server did not write (its syntax is in the document).
    r"cursor is not one this collection returned",
    # Limits in UTF-8 bytes (the document states them in characters, a weaker bound).
    r"is \d+ bytes( long)?; the limit is \d+",
    # How deep and how large a filter may be (a recursive schema cannot count).
    r"the filter nests more than \d+ levels",
    r"the filter has more than \d+ conditions",
    # An update by filter changes at most ingest.max_batch_rows rows per shard.
    r"the filter selects \d+ or more rows in one shard",
]
ALLOWED = re.compile("|".join(f"(?:{rule})" for rule in DATA_DEPENDENT_RULES))


def _message(response):
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None


@schemathesis.check
def strata_positive_data_acceptance(ctx, response, case):
    """`positive_data_acceptance`, except for the data-dependent rules above."""
    if response.status_code == 400:
        message = _message(response)
        if message is not None and ALLOWED.search(message):
            return None
    return positive_data_acceptance(ctx, response, case)
