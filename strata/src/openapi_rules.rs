//! The rules the derive macros cannot state, written into the document by hand: the
//! grammar of filters, the names and values attributes may take, "exactly one of `ids`
//! and `filter`", what a cursor or a base64 vector looks like.
//!
//! Each schema here mirrors a validator, named in its comment; when one changes, so must
//! the other. `scripts/check_openapi.sh` holds the two together: schemathesis sends
//! requests generated from these schemas and fails if the server refuses a schema-valid
//! one or accepts a schema-violating one. What no schema can say because it depends on
//! stored data (a collection's dimension, shard count and attribute types, whether a
//! cursor came from this collection) or on UTF-8 bytes where JSON Schema counts
//! characters is listed in `scripts/schemathesis_hooks.py`, which allows exactly those
//! 400s.

use serde_json::{Value, json};
use strata_types::filter::MAX_IN_ITEMS;
use strata_types::{MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_LIST_ITEMS, MAX_ATTRIBUTE_VALUE_BYTES, MAX_DIMENSION};

/// A regular expression matching one control character (Unicode category Cc, what
/// `char::is_control` tests), in the syntax JSON Schema uses (ECMA 262).
const CONTROL: &str = "[\\u0000-\\u001f\\u007f-\\u009f]";

/// Writes the rules into `doc`'s schemas.
pub(super) fn apply(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let nullable = |schema: Value| json!({"oneOf": [schema, {"type": "null"}]});

    // `strata_types::validate_attribute_key`.
    schemas["AttributeName"] = json!({
        "description": format!("1..={MAX_ATTRIBUTE_KEY_BYTES} bytes of UTF-8, not starting with `$` (filters reserve it \
                                for operators), no control characters."),
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ATTRIBUTE_KEY_BYTES,
        "pattern": "^[^$]",
        "not": {"pattern": CONTROL},
    });
    // `strata_types::validate_attributes`.
    schemas["Attributes"] = json!({
        "description": format!("A row's attributes: a string (≤ {MAX_ATTRIBUTE_VALUE_BYTES} bytes), a number \
                                (an int within 64 bits signed, or a float), a boolean, an array of strings (≤ {MAX_ATTRIBUTE_LIST_ITEMS} \
                                items, ≤ {MAX_ATTRIBUTE_VALUE_BYTES} bytes in all) or null (absent). Each attribute \
                                keeps one type per collection: a value of another type is a 400 naming it."),
        "type": "object",
        "propertyNames": schema_ref("AttributeName"),
        "additionalProperties": {"anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_BYTES},
            number(),
            {"type": "array", "items": {"type": "string"}, "maxItems": MAX_ATTRIBUTE_LIST_ITEMS},
        ]},
    });
    for row in ["Row", "BulkRow"] {
        schemas[row]["properties"]["attributes"] = nullable(schema_ref("Attributes"));
    }
    let patch = &mut schemas["UpdateRequest"]["properties"]["attributes"];
    *patch = json!({"allOf": [schema_ref("Attributes")], "minProperties": 1, "description": patch["description"]});
    schemas["CreateCollectionRequest"]["properties"]["attributes"]["propertyNames"] = schema_ref("AttributeName");

    filter(schemas);

    // The delete and update handlers: "give exactly one of ids and filter", said as "not
    // both and not neither" (code generators turn a `oneOf` into a union of models).
    for request in ["DeleteRequest", "UpdateRequest"] {
        schemas[request]["not"] = json!({"anyOf": [
            {"required": ["ids", "filter"], "properties": {"ids": {"type": "array"}, "filter": {"type": "object"}}},
            {"properties": {"ids": {"type": "null"}, "filter": {"type": "null"}}},
        ]});
    }

    // `RowId::validate`.
    schemas["RowId"]["oneOf"][1]["not"] = json!({"pattern": CONTROL});
    // `strata_query::queries::Cursor`: base64url of what the server wrote.
    let cursor = &mut schemas["QueryRequest"]["properties"]["cursor"];
    cursor["pattern"] = json!("^[A-Za-z0-9_-]+$");
    // `strata_api::vector_encoding`: 1..=MAX_DIMENSION values; base64 of whole f32s.
    let vector = &mut schemas["VectorInput"]["oneOf"];
    vector[0]["minItems"] = json!(1);
    vector[0]["maxItems"] = json!(MAX_DIMENSION);
    // Finite as f32: larger numbers would become infinities.
    vector[0]["items"]["minimum"] = json!(f32::MIN);
    vector[0]["items"]["maximum"] = json!(f32::MAX);
    vector[1]["pattern"] = json!(BASE64_F32S);
    schemas["BulkRow"]["properties"]["vector"]["pattern"] = json!(BASE64_F32S);
}

/// A number as `serde_json` reads it for attributes and filter operands (`validate_attributes`,
/// `filter::parse::scalar`): an integer literal beyond a signed 64-bit integer's range
/// but within an unsigned one's is refused (as a float it would compare inexactly with the
/// int attributes it is meant for); every other number is an int or a float.
fn number() -> Value {
    json!({"type": "number", "not": {"type": "integer", "minimum": (i64::MAX as u64) + 1, "maximum": u64::MAX}})
}

/// A reference to the component schema `name`.
fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Standard padded base64 of a whole, non-zero number of 4-byte values, with the unused
/// bits of the last character zero (the `base64` crate refuses others): 4n bytes are
/// 16n/3 characters, so the text is groups of 16 characters (12 bytes, 3 values) ended by
/// one such group, by 6 characters and `==` (4 bytes) or by 11 characters and `=` (8 bytes).
const BASE64_F32S: &str =
    "^(?:[A-Za-z0-9+/]{16})*(?:[A-Za-z0-9+/]{16}|[A-Za-z0-9+/]{5}[AQgw]==|[A-Za-z0-9+/]{10}[AEIMQUYcgkosw048]=)$";

/// The filter language (`strata_types::filter`, `Filter::parse`): the schemas `Filter`,
/// `FilterCondition`, `FilterOperators` and `FilterScalar`.
fn filter(schemas: &mut Value) {
    let description = schemas["Filter"]["description"].take();
    schemas["Filter"] = json!({
        "description": description,
        "type": "object",
        "properties": {
            "$and": {"type": "array", "items": schema_ref("Filter")},
            "$or": {"type": "array", "items": schema_ref("Filter")},
            "$not": schema_ref("Filter"),
        },
        "propertyNames": {"anyOf": [
            {"enum": ["$and", "$or", "$not"]},
            {"minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY_BYTES, "pattern": "^[^$]"},
        ]},
        "additionalProperties": schema_ref("FilterCondition"),
    });
    schemas["FilterCondition"] = json!({
        "description": "An attribute's condition: a value (equality) or an object of operators that must all hold.",
        "anyOf": [schema_ref("FilterScalar"), schema_ref("FilterOperators")],
    });
    let list = json!({"type": "array", "items": schema_ref("FilterScalar"), "maxItems": MAX_IN_ITEMS});
    schemas["FilterOperators"] = json!({
        "type": "object",
        "minProperties": 1,
        "additionalProperties": false,
        "properties": {
            "$eq": schema_ref("FilterScalar"),
            "$ne": schema_ref("FilterScalar"),
            "$gt": schema_ref("FilterScalar"),
            "$gte": schema_ref("FilterScalar"),
            "$lt": schema_ref("FilterScalar"),
            "$lte": schema_ref("FilterScalar"),
            "$in": list,
            "$nin": list,
            "$exists": {"type": "boolean"},
            "$contains": {"type": "string"},
        },
    });
    schemas["FilterScalar"] = json!({
        "description": "A value to compare with: a string, a boolean or a number (an int within 64 bits signed, or a float).",
        "anyOf": [
            {"type": "string"},
            {"type": "boolean"},
            number(),
        ],
    });
}
