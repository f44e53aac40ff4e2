//! How fresh a read must be (decision 0015): the REST field `consistency`, carried unchanged
//! from the router to the replica that reads the shard.
//!
//! JSON forms: `"strong"` (the default), `"eventual"`, or `{"max_staleness_ms": N}` with
//! `N` an integer in `0..=MAX_STALENESS_MS` (`500.0` is 500, as JSON Schema's `integer`
//! has it; see [`crate::integer`]). Anything else is refused with a message that
//! names the field, so a typo never silently downgrades (or upgrades) a read.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

/// The largest `max_staleness_ms` accepted: one hour. A bound looser than that is what
/// `eventual` gives anyway (its own bound is `query.eventual_max_lag_ms`).
pub const MAX_STALENESS_MS: u64 = 3_600_000;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before the request arrived: checks the shard's head
    /// (or object storage) on every read.
    #[default]
    Strong,
    /// Serves the node's in-memory state of each shard, which a background refresher keeps
    /// within `query.eventual_max_lag_ms` (default 1 s) of acknowledged writes; no request
    /// to coordination or object storage on the request path while a shard is in use.
    Eventual,
    /// Serves the in-memory state if it was confirmed current at most this many
    /// milliseconds ago; otherwise refreshes first, as `Strong` does.
    MaxStaleness { ms: u64 },
}

impl Consistency {
    /// The label of the level in metrics and logs (bounded: three values).
    pub fn label(self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Eventual => "eventual",
            Consistency::MaxStaleness { .. } => "max_staleness",
        }
    }

    /// Reads the JSON form (see the module docs).
    pub fn from_json(value: &Value) -> std::result::Result<Consistency, String> {
        let expected = format!(
            "expected \"strong\", \"eventual\" or {{\"max_staleness_ms\": N}} with N an integer in 0..={MAX_STALENESS_MS}"
        );
        match value {
            Value::String(s) if s == "strong" => Ok(Consistency::Strong),
            Value::String(s) if s == "eventual" => Ok(Consistency::Eventual),
            Value::Object(fields) if fields.len() == 1 && fields.contains_key("max_staleness_ms") => {
                let n = &fields["max_staleness_ms"];
                match n.as_number().and_then(crate::integer::from_json) {
                    Some(ms) if ms <= MAX_STALENESS_MS => Ok(Consistency::MaxStaleness { ms }),
                    _ => Err(format!("max_staleness_ms must be an integer in 0..={MAX_STALENESS_MS}, got {n}")),
                }
            }
            other => Err(format!("{expected}, got {other}")),
        }
    }

    /// The JSON form.
    pub fn to_json(self) -> Value {
        match self {
            Consistency::Strong => json!("strong"),
            Consistency::Eventual => json!("eventual"),
            Consistency::MaxStaleness { ms } => json!({ "max_staleness_ms": ms }),
        }
    }
}

impl<'de> Deserialize<'de> for Consistency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Consistency::from_json(&value).map_err(D::Error::custom)
    }
}

impl Serialize for Consistency {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_round_trip() {
        for c in [Consistency::Strong, Consistency::Eventual, Consistency::MaxStaleness { ms: 500 }] {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Consistency>(&text).unwrap(), c, "{text}");
        }
        assert_eq!(serde_json::to_value(Consistency::MaxStaleness { ms: 0 }).unwrap(), json!({"max_staleness_ms": 0}));
        let integral = serde_json::from_value::<Consistency>(json!({"max_staleness_ms": 500.0})).unwrap();
        assert_eq!(integral, Consistency::MaxStaleness { ms: 500 });
    }

    #[test]
    fn bad_forms_are_refused_naming_what_is_wrong() {
        for (bad, says) in [
            (json!({"max_staleness_ms": -1}), "max_staleness_ms must be an integer"),
            (json!({"max_staleness_ms": 1.5}), "max_staleness_ms must be an integer"),
            (json!({"max_staleness_ms": 1e30}), "max_staleness_ms must be an integer"),
            (json!({"max_staleness_ms": MAX_STALENESS_MS + 1}), "max_staleness_ms must be an integer"),
            (json!({"max_staleness_ms": "100"}), "max_staleness_ms must be an integer"),
            (json!({"max_staleness_ms": 3_600_001.0}), "max_staleness_ms must be an integer"),
            (json!({"max_staleness_ms": 1, "x": 2}), "expected \"strong\""),
            (json!({"max_stale": 1}), "expected \"strong\""),
            (json!("Strong"), "expected \"strong\""),
            (json!(null), "expected \"strong\""),
        ] {
            let err = serde_json::from_value::<Consistency>(bad.clone()).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
