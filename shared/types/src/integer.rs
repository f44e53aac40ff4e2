//! Integers in JSON requests.
//!
//! The OpenAPI document types count, size and index fields (`top_k`, `limit`, `shard`,
//! `dimension`, ids, …) as JSON Schema `integer`, which admits any number whose fractional
//! part is zero: `85.0` is a valid `integer` there, and some clients (Python's `json` with
//! a float in hand) write integers that way. So the server takes them too: a float with no
//! fractional part below 2^53 (where an `f64` still holds every integer exactly) is that
//! integer. A fractional, negative, too large or non-numeric value is refused with a
//! message that names it, e.g. `expected a non-negative integer, got 85.5`.
//!
//! Use on a field with `#[serde(deserialize_with = "strata_types::integer::deserialize")]`,
//! or [`option::deserialize`] for an `Option`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// Floats at or above this are refused as integers: past 2^53 an `f64` no longer holds
/// every integer, so the number parsed may not be the number written.
pub const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// The integer a JSON float stands for, when it stands for one exactly.
pub fn from_f64(v: f64) -> Option<u64> {
    (v.is_finite() && v.fract() == 0.0 && (0.0..MAX_EXACT_FLOAT).contains(&v)).then_some(v as u64)
}

/// The non-negative integer a JSON number stands for: an unsigned integer, or a float
/// with no fractional part (see the module docs).
pub fn from_json(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| n.as_f64().and_then(from_f64))
}

/// Deserializes a non-negative integer that fits `T`, taking integral floats.
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(IntVisitor(PhantomData))
}

/// The same for an optional field (`null` is `None`).
pub mod option {
    use serde::{Deserialize, Deserializer};

    /// Deserializes `null` or a non-negative integer that fits `T` (see the module docs).
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        Ok(Option::<Int<T>>::deserialize(deserializer)?.map(|Int(v)| v))
    }

    struct Int<T>(T);

    impl<'de, T: TryFrom<u64>> Deserialize<'de> for Int<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            super::deserialize(deserializer).map(Int)
        }
    }
}

struct IntVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> IntVisitor<T> {
    fn fit<E: de::Error>(v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is too large for this field")))
    }
}

impl<T: TryFrom<u64>> Visitor<'_> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::fit(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => Self::fit(v),
            Err(_) => Err(E::custom(format!("expected a non-negative integer, got {v}"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        match from_f64(v) {
            Some(v) => Self::fit(v),
            None => Err(E::custom(format!("expected a non-negative integer, got {v:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Req {
        #[serde(deserialize_with = "super::deserialize")]
        n: u32,
        #[serde(default, deserialize_with = "super::option::deserialize")]
        o: Option<usize>,
    }

    fn parse(v: serde_json::Value) -> Result<(u32, Option<usize>), String> {
        serde_json::from_value::<Req>(v).map(|r| (r.n, r.o)).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(parse(json!({"n": 85})), Ok((85, None)));
        assert_eq!(parse(json!({"n": 85.0, "o": 3.0})), Ok((85, Some(3))));
        assert_eq!(parse(json!({"n": 0, "o": null})), Ok((0, None)));
        assert_eq!(serde_json::from_str::<Req>(r#"{"n": 1e3}"#).unwrap().n, 1000);
    }

    #[test]
    fn everything_else_is_refused_naming_the_value() {
        for (bad, says) in [
            (json!({"n": 85.5}), "expected a non-negative integer, got 85.5"),
            (json!({"n": -1}), "expected a non-negative integer, got -1"),
            (json!({"n": -2.0}), "got -2"),
            (json!({"n": 1e300}), "got 1e300"),
            (json!({"n": 5_000_000_000u64}), "5000000000 is too large"),
            (json!({"n": "7"}), "expected a non-negative integer"),
            (json!({"n": 1, "o": 0.5}), "got 0.5"),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(super::from_f64(super::MAX_EXACT_FLOAT), None);
        assert_eq!(super::from_f64(super::MAX_EXACT_FLOAT - 1.0), Some((1 << 53) - 1));
    }
}
