//! The two wire forms of a vector in REST requests: a JSON array of numbers, or a base64
//! string (standard alphabet, `=` padding) of the vector's little-endian `f32` bytes.
//!
//! Why base64: parsing a million JSON numbers per 1,000-row upsert dominated write-ack
//! latency; the base64 form is ~4× smaller than decimal text and decodes at memory speed.
//!
//! Flow: `#[serde(deserialize_with = "vector_encoding::deserialize")]` on a `Vec<f32>`
//! field accepts either form. A string is decoded by [`decode_base64_f32`] in fixed-size
//! chunks through a stack buffer straight into the output vector, so there is no
//! intermediate heap buffer of bytes. Errors become serde errors and therefore 400
//! `invalid_argument` responses naming the field; the dimension is checked later, like an
//! array's, by `CollectionDef::validate_vector`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a base64 vector was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VectorDecodeError {
    /// A character outside the standard base64 alphabet, or padding before the end.
    #[error("invalid base64: character {character:?} at offset {offset}")]
    InvalidCharacter { offset: usize, character: char },
    /// The text is not whole groups of 4 characters, or its padding is wrong.
    #[error("invalid base64: {len} characters are not correctly padded groups of 4 (standard alphabet, `=` padding)")]
    InvalidLength { len: usize },
    /// Valid base64 whose bytes are not a whole number of `f32` values.
    #[error("base64 vector decodes to {bytes} bytes, which is not a multiple of 4 (expected little-endian f32 values)")]
    NotWholeFloats { bytes: usize },
}

/// Characters decoded per step; a multiple of 4 (whole base64 groups), so only the last
/// step can hold padding, and its 3,072 output bytes are whole `f32`s.
const CHUNK_CHARS: usize = 4096;
const CHUNK_BYTES: usize = CHUNK_CHARS / 4 * 3;

/// Decodes the base64 text of little-endian `f32` bytes into a vector.
pub fn decode_base64_f32(text: &str) -> Result<Vec<f32>, VectorDecodeError> {
    let input = text.as_bytes();
    let mut out = Vec::with_capacity(input.len() / 4 * 3 / 4);
    let mut buf = [0u8; CHUNK_BYTES];
    let mut bytes = 0;
    for (i, chunk) in input.chunks(CHUNK_CHARS).enumerate() {
        let start = i * CHUNK_CHARS;
        let n = STANDARD.decode_slice(chunk, &mut buf).map_err(|e| map_error(e, start, input.len()))?;
        bytes += n;
        // Only the last chunk can end mid-float: every earlier one yields CHUNK_BYTES.
        out.extend(buf[..n].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    }
    if bytes % 4 != 0 {
        return Err(VectorDecodeError::NotWholeFloats { bytes });
    }
    Ok(out)
}

fn map_error(err: base64::DecodeSliceError, chunk_start: usize, len: usize) -> VectorDecodeError {
    use base64::{DecodeError, DecodeSliceError};
    match err {
        DecodeSliceError::DecodeError(
            DecodeError::InvalidByte(offset, byte) | DecodeError::InvalidLastSymbol { offset, symbol: byte, .. },
        ) => VectorDecodeError::InvalidCharacter { offset: chunk_start + offset, character: char::from(byte) },
        // A CHUNK_BYTES buffer always fits CHUNK_CHARS of input, so "output too small"
        // cannot happen; report it as the malformed input it would have to be.
        DecodeSliceError::DecodeError(DecodeError::InvalidLength(_) | DecodeError::InvalidPadding)
        | DecodeSliceError::OutputSliceTooSmall => VectorDecodeError::InvalidLength { len },
    }
}

/// Encodes a vector as base64 of its little-endian `f32` bytes (the inverse of
/// [`decode_base64_f32`]); for clients, the benchmark and tests.
pub fn encode_base64_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// serde `deserialize_with` for a `Vec<f32>` that accepts either wire form.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
    deserializer.deserialize_any(VectorVisitor)
}

struct VectorVisitor;

impl<'de> Visitor<'de> for VectorVisitor {
    type Value = Vec<f32>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers or a base64 string of little-endian f32 bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
        // Cap the hint like serde does, so a hostile length cannot reserve gigabytes.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element::<f32>()? {
            out.push(v);
        }
        Ok(out)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<f32>, E> {
        decode_base64_f32(text).map_err(E::custom)
    }
}

// The OpenAPI shape of a request vector (documentation only; requests are read by
// `deserialize`).
/// A vector: `dimension` finite numbers, as a JSON array or as base64 of their
/// little-endian f32 bytes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VectorInput {
    /// The values as JSON numbers, e.g. `[1, 0, 0]`.
    Numbers(Vec<f32>),
    /// Base64 (standard alphabet, `=` padding) of the values' little-endian f32 bytes,
    /// e.g. `"AACAPwAAAAAAAAAA"` for `[1, 0, 0]`.
    Base64(String),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decodes_the_documented_example() {
        assert_eq!(decode_base64_f32("AACAPwAAAAAAAAAA").unwrap(), vec![1.0, 0.0, 0.0]);
        assert_eq!(encode_base64_f32(&[1.0, 0.0, 0.0]), "AACAPwAAAAAAAAAA");
        assert_eq!(decode_base64_f32("").unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn refuses_bad_text_and_partial_floats() {
        // 3 bytes: valid base64, not a whole f32.
        assert_eq!(decode_base64_f32("AACA"), Err(VectorDecodeError::NotWholeFloats { bytes: 3 }));
        // 6 bytes (with padding).
        assert_eq!(decode_base64_f32("AACAPwAA"), Err(VectorDecodeError::NotWholeFloats { bytes: 6 }));
        assert_eq!(
            decode_base64_f32("AACAP!AA"),
            Err(VectorDecodeError::InvalidCharacter { offset: 5, character: '!' })
        );
        assert_eq!(decode_base64_f32("AACAPwA"), Err(VectorDecodeError::InvalidLength { len: 7 }));
        // Padding in the middle is refused, not silently truncated.
        assert!(decode_base64_f32("AACAPw==AAAAAAAA").is_err());
    }

    #[test]
    fn offsets_count_from_the_start_of_long_inputs() {
        let mut text = encode_base64_f32(&vec![0.5; 2000]);
        text.replace_range(5000..5001, "*");
        assert_eq!(decode_base64_f32(&text), Err(VectorDecodeError::InvalidCharacter { offset: 5000, character: '*' }));
    }

    #[test]
    fn serde_accepts_both_forms_and_names_the_problem() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(deserialize_with = "deserialize")]
            vector: Vec<f32>,
        }
        let parse = |s: &str| serde_json::from_str::<Body>(s).map(|b| b.vector);
        assert_eq!(parse(r#"{"vector": [1, 0.5, -2]}"#).unwrap(), vec![1.0, 0.5, -2.0]);
        assert_eq!(parse(r#"{"vector": "AACAPwAAAAAAAAAA"}"#).unwrap(), vec![1.0, 0.0, 0.0]);
        // JSON escapes are undone before decoding (`\/` is `/`).
        let slash = encode_base64_f32(&[f32::from_bits(0xffff_ff3f)]);
        assert!(slash.contains('/'), "{slash}");
        let escaped = format!(r#"{{"vector": "{}"}}"#, slash.replace('/', "\\/"));
        assert_eq!(parse(&escaped).unwrap()[0].to_bits(), 0xffff_ff3f);
        let err = parse(r#"{"vector": "AACA"}"#).unwrap_err().to_string();
        assert!(err.contains("not a multiple of 4"), "{err}");
        let err = parse(r#"{"vector": {"a": 1}}"#).unwrap_err().to_string();
        assert!(err.contains("an array of numbers or a base64 string"), "{err}");
    }

    proptest! {
        #[test]
        fn base64_round_trips_every_bit_pattern(bits in prop::collection::vec(any::<u32>(), 0..3000)) {
            // Arbitrary bit patterns include NaNs and infinities: the codec must carry
            // them unchanged (validation refuses them later, with its own message).
            let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            let decoded = decode_base64_f32(&encode_base64_f32(&values)).unwrap();
            let decoded_bits: Vec<u32> = decoded.iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(decoded_bits, bits);
        }
    }
}
