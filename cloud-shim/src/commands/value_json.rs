//! Converting between JSON (the HTTP API, the store) and the protocol's dynamic CBOR [`Value`]
//! (command parameters and results on the wire).

use scs_protocol::Value;
use serde_json::{Map, Number, Value as Json};

/// JSON → wire value. Integers that fit `i64` stay integers; other numbers become floats.
pub fn json_to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(json_to_value).collect()),
        Json::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect()),
    }
}

/// Wire value → JSON. Bytes become lower-case hex (JSON has no byte strings); non-finite floats null.
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(f) => Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::Array(a) => Json::Array(a.iter().map(value_to_json).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect::<Map<_, _>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let j = serde_json::json!({"a": 1, "b": 1.5, "c": [true, null, "x"], "d": {"e": -3}});
        assert_eq!(value_to_json(&json_to_value(&j)), j);
        assert_eq!(value_to_json(&Value::Bytes(vec![0, 255])), Json::String("00ff".into()));
    }
}
