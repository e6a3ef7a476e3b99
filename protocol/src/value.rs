//! A dynamic CBOR value for command parameters and results, whose shape the command registry (not the
//! wire format) defines. Decoding is bounded in depth and element count so hostile input cannot exhaust
//! the stack or memory.

use std::collections::BTreeMap;

use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};
use minicbor::encode::{Encoder, Error as EncodeError, Write};

use crate::limits::{MAX_VALUE_DEPTH, MAX_VALUE_ITEMS};

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// Field of a map value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }
    /// Short type name for error messages ("expected integer, got text").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Text(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "object",
        }
    }
    pub fn map<I: IntoIterator<Item = (K, Value)>, K: Into<String>>(entries: I) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<u64> for Value {
    fn from(i: u64) -> Value {
        i64::try_from(i).map(Value::Int).unwrap_or(Value::Float(i as f64))
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// Writes a float in the shortest IEEE width that round-trips exactly (f32 or f64).
pub(crate) fn encode_float<W: Write>(f: f64, e: &mut Encoder<W>) -> Result<(), EncodeError<W::Error>> {
    if (f as f32) as f64 == f || f.is_nan() {
        e.f32(f as f32)?;
    } else {
        e.f64(f)?;
    }
    Ok(())
}

impl<C> minicbor::Encode<C> for Value {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, ctx: &mut C) -> Result<(), EncodeError<W::Error>> {
        match self {
            Value::Null => {
                e.null()?;
            }
            Value::Bool(b) => {
                e.bool(*b)?;
            }
            Value::Int(i) => {
                e.i64(*i)?;
            }
            Value::Float(f) => encode_float(*f, e)?,
            Value::Text(s) => {
                e.str(s)?;
            }
            Value::Bytes(b) => {
                e.bytes(b)?;
            }
            Value::Array(a) => {
                e.array(a.len() as u64)?;
                for v in a {
                    v.encode(e, ctx)?;
                }
            }
            Value::Map(m) => {
                e.map(m.len() as u64)?;
                for (k, v) in m {
                    e.str(k)?;
                    v.encode(e, ctx)?;
                }
            }
        }
        Ok(())
    }
}

impl<'b, C> minicbor::Decode<'b, C> for Value {
    fn decode(d: &mut Decoder<'b>, _ctx: &mut C) -> Result<Self, DecodeError> {
        let mut budget = MAX_VALUE_ITEMS;
        decode_value(d, 0, &mut budget)
    }
}

fn take(budget: &mut usize, n: u64) -> Result<(), DecodeError> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > *budget {
        return Err(DecodeError::message("value has too many elements"));
    }
    *budget -= n;
    Ok(())
}

fn decode_value(d: &mut Decoder<'_>, depth: usize, budget: &mut usize) -> Result<Value, DecodeError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(DecodeError::message("value nested too deeply"));
    }
    Ok(match d.datatype()? {
        Type::Null | Type::Undefined => {
            d.skip()?;
            Value::Null
        }
        Type::Bool => Value::Bool(d.bool()?),
        Type::U8 | Type::U16 | Type::U32 | Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::Int(d.i64()?),
        Type::U64 => {
            let u = d.u64()?;
            i64::try_from(u).map(Value::Int).unwrap_or(Value::Float(u as f64))
        }
        Type::F16 => Value::Float(d.f16()? as f64),
        Type::F32 => Value::Float(d.f32()? as f64),
        Type::F64 => Value::Float(d.f64()?),
        Type::String => Value::Text(d.str()?.to_owned()),
        Type::Bytes => Value::Bytes(d.bytes()?.to_vec()),
        Type::Array => {
            let n = d.array()?.ok_or_else(|| DecodeError::message("indefinite arrays are not accepted"))?;
            take(budget, n)?;
            let mut a = Vec::with_capacity(n.min(64) as usize);
            for _ in 0..n {
                a.push(decode_value(d, depth + 1, budget)?);
            }
            Value::Array(a)
        }
        Type::Map => {
            let n = d.map()?.ok_or_else(|| DecodeError::message("indefinite maps are not accepted"))?;
            take(budget, n)?;
            let mut m = BTreeMap::new();
            for _ in 0..n {
                let k = d.str()?.to_owned();
                let v = decode_value(d, depth + 1, budget)?;
                m.insert(k, v);
            }
            Value::Map(m)
        }
        other => return Err(DecodeError::type_mismatch(other).with_message("unsupported value type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let v = Value::map([
            ("a", Value::Int(-5)),
            ("b", Value::Float(1.5)),
            ("c", Value::Float(0.1)),
            ("d", Value::Array(vec![Value::Null, Value::Bool(true), "x".into()])),
            ("e", Value::Bytes(vec![1, 2, 3])),
        ]);
        let bytes = minicbor::to_vec(&v).unwrap();
        let back: Value = minicbor::decode(&bytes).unwrap();
        assert_eq!(v, back);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = vec![0x81; 100]; // 100 nested one-element arrays
        bytes.push(0x00);
        assert!(minicbor::decode::<Value>(&bytes).is_err());
    }

    #[test]
    fn huge_declared_length_is_refused_without_allocating() {
        // array of 2^32 elements, no content
        let bytes = [0x9a, 0xff, 0xff, 0xff, 0xff];
        assert!(minicbor::decode::<Value>(&bytes).is_err());
    }
}
