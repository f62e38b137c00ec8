//! Direct conversions between Rust types and [`Value`] through serde, for native operator
//! kinds (see [`crate::registry`]).
//!
//! [`to_value`] serializes straight into a `Value` and [`from_value`] deserializes straight
//! from a borrowed one: no `serde_json::Value` in between. Strings are lent to the type being
//! built (`&str` fields, `IgnoredAny`, a `String` copies once), and a part of the element the
//! type ignores is skipped without being built. The mapping is serde_json's: a unit, a unit
//! struct and `None` are null; a unit variant is its name; any other variant is a one-key map
//! from its name; bytes are an array of integers; map keys are strings (integers and bools
//! become their text). Unlike serde_json, a non-finite float stays a float (it is written as
//! `null` only where an element is printed as JSON).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use crate::value::Value;

/// Why a value could not be converted (the type does not match the element, or a map key
/// is not a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError(String);

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}

impl de::Error for ConvertError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ConvertError(msg.to_string())
    }
}

impl ser::Error for ConvertError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ConvertError(msg.to_string())
    }
}

/// Builds a `T` from a borrowed element.
pub fn from_value<'de, T: de::Deserialize<'de>>(v: &'de Value) -> Result<T, ConvertError> {
    T::deserialize(Ref(v))
}

/// Serializes `u` into an element.
pub fn to_value<U: Serialize + ?Sized>(u: &U) -> Result<Value, ConvertError> {
    u.serialize(ToValue)
}

/// Converts `u` into an element, moving it when it already is one.
pub fn into_value<U: Serialize + 'static>(u: U) -> Result<Value, ConvertError> {
    let mut slot = Some(u);
    if let Some(v) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Value>>() {
        return Ok(v.take().expect("just set"));
    }
    to_value(slot.as_ref().expect("just set"))
}

// ------------------------------------------------------------------------ deserializing

/// A borrowed element as a serde `Deserializer`.
#[derive(Clone, Copy)]
struct Ref<'de>(&'de Value);

impl<'de> IntoDeserializer<'de, ConvertError> for Ref<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Ref<'de> {
    fn seq<V: Visitor<'de>>(a: &'de [Value], v: V) -> Result<V::Value, ConvertError> {
        let mut d = SeqDeserializer::new(a.iter().map(Ref));
        let out = v.visit_seq(&mut d)?;
        d.end()?;
        Ok(out)
    }

    fn map<V: Visitor<'de>>(
        m: &'de BTreeMap<String, Value>,
        v: V,
    ) -> Result<V::Value, ConvertError> {
        let mut d = MapDeserializer::new(m.iter().map(|(k, x)| (Key(k), Ref(x))));
        let out = v.visit_map(&mut d)?;
        d.end()?;
        Ok(out)
    }
}

impl<'de> de::Deserializer<'de> for Ref<'de> {
    type Error = ConvertError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ConvertError> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => v.visit_i64(*i),
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_borrowed_str(s),
            Value::Array(a) => Ref::seq(a, v),
            Value::Map(m) => Ref::map(m, v),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ConvertError> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, ConvertError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ConvertError> {
        match self.0 {
            Value::Str(s) => v.visit_enum(Variant(s, None)),
            Value::Map(m) if m.len() == 1 => {
                let (k, x) = m.iter().next().expect("one entry");
                v.visit_enum(Variant(k, Some(x)))
            }
            other => Err(ConvertError(format!(
                "a {} is not an enum variant (a string, or a map with one key)",
                other.type_name()
            ))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ConvertError> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// A map key: a string, read as a number or a bool where the type asks for one (as
/// serde_json reads the keys of a JSON object).
struct Key<'de>(&'de str);

impl<'de> IntoDeserializer<'de, ConvertError> for Key<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! parse_key {
    ($($method:ident $visit:ident $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ConvertError> {
            match self.0.parse::<$t>() {
                Ok(x) => v.$visit(x),
                Err(_) => Err(ConvertError(format!(
                    "map key {:?} is not a {}", self.0, stringify!($t)
                ))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Key<'de> {
    type Error = ConvertError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ConvertError> {
        v.visit_borrowed_str(self.0)
    }

    parse_key! {
        deserialize_bool visit_bool bool,
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ConvertError> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, ConvertError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ConvertError> {
        v.visit_enum(Variant(self.0, None))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// A variant given as a one-key map: its name and its content.
struct Variant<'de>(&'de str, Option<&'de Value>);

impl<'de> de::EnumAccess<'de> for Variant<'de> {
    type Error = ConvertError;
    type Variant = Self;

    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), ConvertError> {
        let name: de::value::BorrowedStrDeserializer<'de, ConvertError> =
            de::value::BorrowedStrDeserializer::new(self.0);
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'de> {
    type Error = ConvertError;

    fn unit_variant(self) -> Result<(), ConvertError> {
        match self.1 {
            None | Some(Value::Null) => Ok(()),
            Some(x) => Err(ConvertError(format!(
                "variant {} takes no content, got a {}",
                self.0,
                x.type_name()
            ))),
        }
    }

    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ConvertError> {
        seed.deserialize(Ref(self.1.unwrap_or(&Value::Null)))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, ConvertError> {
        match self.1 {
            Some(Value::Array(a)) => Ref::seq(a, v),
            _ => Err(ConvertError(format!("variant {} takes an array", self.0))),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ConvertError> {
        match self.1 {
            Some(Value::Map(m)) => Ref::map(m, v),
            Some(Value::Array(a)) => Ref::seq(a, v),
            _ => Err(ConvertError(format!("variant {} takes a map", self.0))),
        }
    }
}

// -------------------------------------------------------------------------- serializing

/// The serde `Serializer` whose output is an element.
struct ToValue;

fn int<T: TryInto<i64> + TryInto<u64> + Copy + fmt::Display>(x: T) -> Result<Value, ConvertError> {
    match TryInto::<i64>::try_into(x) {
        Ok(i) => Ok(Value::Int(i)),
        // Beyond i64 (as JSON numbers read into an element): a float.
        Err(_) => match TryInto::<u64>::try_into(x) {
            Ok(u) => Ok(Value::Float(u as f64)),
            Err(_) => Err(ConvertError(format!(
                "{x} is out of range of an element's i64"
            ))),
        },
    }
}

fn single(name: &str, x: Value) -> Value {
    let mut m = BTreeMap::new();
    m.insert(name.to_owned(), x);
    Value::Map(m)
}

impl ser::Serializer for ToValue {
    type Ok = Value;
    type Error = ConvertError;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Seq;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Map;

    fn serialize_bool(self, b: bool) -> Result<Value, ConvertError> {
        Ok(Value::Bool(b))
    }
    fn serialize_i8(self, x: i8) -> Result<Value, ConvertError> {
        Ok(Value::Int(x.into()))
    }
    fn serialize_i16(self, x: i16) -> Result<Value, ConvertError> {
        Ok(Value::Int(x.into()))
    }
    fn serialize_i32(self, x: i32) -> Result<Value, ConvertError> {
        Ok(Value::Int(x.into()))
    }
    fn serialize_i64(self, x: i64) -> Result<Value, ConvertError> {
        Ok(Value::Int(x))
    }
    fn serialize_i128(self, x: i128) -> Result<Value, ConvertError> {
        int(x)
    }
    fn serialize_u8(self, x: u8) -> Result<Value, ConvertError> {
        Ok(Value::Int(x.into()))
    }
    fn serialize_u16(self, x: u16) -> Result<Value, ConvertError> {
        Ok(Value::Int(x.into()))
    }
    fn serialize_u32(self, x: u32) -> Result<Value, ConvertError> {
        Ok(Value::Int(x.into()))
    }
    fn serialize_u64(self, x: u64) -> Result<Value, ConvertError> {
        int(x)
    }
    fn serialize_u128(self, x: u128) -> Result<Value, ConvertError> {
        int(x)
    }
    fn serialize_f32(self, x: f32) -> Result<Value, ConvertError> {
        Ok(Value::Float(x.into()))
    }
    fn serialize_f64(self, x: f64) -> Result<Value, ConvertError> {
        Ok(Value::Float(x))
    }
    fn serialize_char(self, c: char) -> Result<Value, ConvertError> {
        Ok(Value::Str(c.to_string()))
    }
    fn serialize_str(self, s: &str) -> Result<Value, ConvertError> {
        Ok(Value::Str(s.to_owned()))
    }
    fn serialize_bytes(self, b: &[u8]) -> Result<Value, ConvertError> {
        Ok(Value::Array(
            b.iter().map(|x| Value::Int((*x).into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, ConvertError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, x: &T) -> Result<Value, ConvertError> {
        x.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ConvertError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ConvertError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ConvertError> {
        Ok(Value::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        x: &T,
    ) -> Result<Value, ConvertError> {
        x.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        x: &T,
    ) -> Result<Value, ConvertError> {
        Ok(single(variant, x.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, ConvertError> {
        Ok(Seq {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, ConvertError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, ConvertError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq, ConvertError> {
        Ok(Seq {
            items: Vec::with_capacity(len.min(4096)),
            variant: Some(variant),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map, ConvertError> {
        Ok(Map {
            map: BTreeMap::new(),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Map, ConvertError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Map, ConvertError> {
        Ok(Map {
            map: BTreeMap::new(),
            key: None,
            variant: Some(variant),
        })
    }
}

/// An array being serialized (a sequence, a tuple, or a tuple variant's content).
struct Seq {
    items: Vec<Value>,
    variant: Option<&'static str>,
}

impl Seq {
    fn push<T: Serialize + ?Sized>(&mut self, x: &T) -> Result<(), ConvertError> {
        self.items.push(x.serialize(ToValue)?);
        Ok(())
    }

    fn done(self) -> Result<Value, ConvertError> {
        let a = Value::Array(self.items);
        Ok(match self.variant {
            Some(name) => single(name, a),
            None => a,
        })
    }
}

/// The serde traits of [`Seq`]: each element is pushed, the end makes the array.
macro_rules! seq_traits {
    ($($tr:ident $method:ident),*) => {$(
        impl ser::$tr for Seq {
            type Ok = Value;
            type Error = ConvertError;
            fn $method<T: Serialize + ?Sized>(&mut self, x: &T) -> Result<(), ConvertError> {
                self.push(x)
            }
            fn end(self) -> Result<Value, ConvertError> {
                self.done()
            }
        }
    )*};
}

seq_traits!(
    SerializeSeq serialize_element,
    SerializeTuple serialize_element,
    SerializeTupleStruct serialize_field,
    SerializeTupleVariant serialize_field
);

/// A map being serialized (a map, a struct, or a struct variant's content).
struct Map {
    map: BTreeMap<String, Value>,
    key: Option<String>,
    variant: Option<&'static str>,
}

impl Map {
    fn done(self) -> Result<Value, ConvertError> {
        let m = Value::Map(self.map);
        Ok(match self.variant {
            Some(name) => single(name, m),
            None => m,
        })
    }
}

/// A map key as text: strings, and integers and bools as their text.
fn key_text<T: Serialize + ?Sized>(k: &T) -> Result<String, ConvertError> {
    match k.serialize(ToValue)? {
        Value::Str(s) => Ok(s),
        Value::Int(i) => Ok(i.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(ConvertError(format!(
            "a map key must be a string, an integer or a bool, not a {}",
            other.type_name()
        ))),
    }
}

impl ser::SerializeMap for Map {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), ConvertError> {
        self.key = Some(key_text(k)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, x: &T) -> Result<(), ConvertError> {
        let k = self
            .key
            .take()
            .ok_or_else(|| ConvertError("a map value came before its key".into()))?;
        self.map.insert(k, x.serialize(ToValue)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ConvertError> {
        self.done()
    }
}

/// The serde traits of [`Map`] for structs: each field is a key.
macro_rules! struct_traits {
    ($($tr:ident),*) => {$(
        impl ser::$tr for Map {
            type Ok = Value;
            type Error = ConvertError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                x: &T,
            ) -> Result<(), ConvertError> {
                self.map.insert(name.to_owned(), x.serialize(ToValue)?);
                Ok(())
            }
            fn end(self) -> Result<Value, ConvertError> {
                self.done()
            }
        }
    )*};
}

struct_traits!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Pair(i64, i64),
        Rect { w: f64, h: f64 },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Reading {
        id: u32,
        name: String,
        tags: Vec<String>,
        level: Option<f64>,
        shape: Shape,
        extra: std::collections::BTreeMap<u16, bool>,
        unit: (),
    }

    fn reading(shape: Shape) -> Reading {
        Reading {
            id: 7,
            name: "pump ü".into(),
            tags: vec!["a".into(), String::new()],
            level: None,
            shape,
            extra: [(3, true), (10, false)].into_iter().collect(),
            unit: (),
        }
    }

    /// The same value through serde_json: the mapping this module keeps.
    fn via_json<U: Serialize>(u: &U) -> Value {
        serde_json::from_value(serde_json::to_value(u).unwrap()).unwrap()
    }

    #[test]
    fn rust_values_become_the_elements_serde_json_would_make_and_come_back() {
        for shape in [
            Shape::Dot,
            Shape::Circle(1.5),
            Shape::Pair(-1, 2),
            Shape::Rect { w: 2.0, h: 0.5 },
        ] {
            let r = reading(shape);
            let v = to_value(&r).unwrap();
            assert_eq!(v, via_json(&r), "{r:?}");
            assert_eq!(from_value::<Reading>(&v).unwrap(), r);
            let j: serde_json::Value = serde_json::to_value(&v).unwrap();
            assert_eq!(serde_json::from_value::<Reading>(j).unwrap(), r);
        }
        let t = (1u8, -2i16, 3.25f32, 'c', Some("s"), vec![u64::MAX]);
        assert_eq!(to_value(&t).unwrap(), via_json(&t));
        assert_eq!(
            to_value(&serde_bytes_like()).unwrap(),
            Value::Array(vec![Value::Int(1), Value::Int(255)])
        );
    }

    fn serde_bytes_like() -> impl Serialize {
        struct B;
        impl Serialize for B {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&[1, 255])
            }
        }
        B
    }

    #[test]
    fn strings_are_lent_and_ignored_parts_are_not_built() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::Str("x".repeat(1000)),
            Value::Map(Default::default()),
        ]);
        let (i, s, _): (i64, &str, serde::de::IgnoredAny) = from_value(&v).unwrap();
        assert_eq!(i, 1);
        let Value::Array(a) = &v else { unreachable!() };
        let Value::Str(orig) = &a[1] else {
            unreachable!()
        };
        assert_eq!(s.as_ptr(), orig.as_ptr(), "the string is lent, not copied");
    }

    #[test]
    fn mismatches_are_errors_that_say_what_was_expected() {
        let e = from_value::<(i64, String)>(&Value::Array(vec![Value::Int(1)])).unwrap_err();
        assert!(e.to_string().contains("2"), "{e}");
        let e = from_value::<i64>(&Value::Str("a".into())).unwrap_err();
        assert!(e.to_string().contains("string"), "{e}");
        assert!(from_value::<i64>(&Value::Float(1.5)).is_err());
        assert!(from_value::<u8>(&Value::Int(300)).is_err());
        assert!(from_value::<(i64,)>(&Value::Array(vec![Value::Int(1), Value::Int(2)])).is_err());
        let e = from_value::<Shape>(&Value::Int(3)).unwrap_err();
        assert!(e.to_string().contains("enum"), "{e}");
        let e = to_value(&std::collections::HashMap::from([((1, 2), 3)])).unwrap_err();
        assert!(e.to_string().contains("map key"), "{e}");
        assert!(to_value(&i128::MIN).is_err());
    }

    #[test]
    fn numbers_cross_as_serde_json_reads_them_and_floats_stay_floats() {
        assert_eq!(from_value::<f64>(&Value::Int(3)).unwrap(), 3.0);
        assert_eq!(to_value(&u64::MAX).unwrap(), Value::Float(u64::MAX as f64));
        assert_eq!(to_value(&(i64::MAX as u64)).unwrap(), Value::Int(i64::MAX));
        assert!(matches!(to_value(&f64::NAN).unwrap(), Value::Float(f) if f.is_nan()));
        assert!(from_value::<f64>(&Value::Float(f64::INFINITY))
            .unwrap()
            .is_infinite());
        assert_eq!(from_value::<Option<i64>>(&Value::Null).unwrap(), None);
        assert_eq!(from_value::<Option<i64>>(&Value::Int(2)).unwrap(), Some(2));
        assert_eq!(from_value::<()>(&Value::Null).unwrap(), ());
    }

    #[test]
    fn an_element_given_as_an_element_is_moved_not_rebuilt() {
        let v = Value::Str("y".repeat(100));
        let Value::Str(s) = &v else { unreachable!() };
        let p = s.as_ptr();
        let out = into_value(v).unwrap();
        let Value::Str(s) = &out else { unreachable!() };
        assert_eq!(s.as_ptr(), p);
        assert_eq!(into_value(3u8).unwrap(), Value::Int(3));
    }
}
