//! The request body of a create or a patch, decoded in one pass.
//!
//! serde drives a visitor straight over the bytes: no `serde_json::Value`,
//! no second (trial) deserialisation. What that buys, against a hostile body:
//!
//! - **Nothing is built for what is not a field.** An unknown member's value
//!   is skipped with [`serde::de::IgnoredAny`], so a 1 MiB `"x":[[],[],…]`
//!   allocates nothing (a `Value` made ~10 bytes of heap per body byte, and
//!   the old per-member trial parse cloned it again). A known member of the
//!   wrong type (an array for `name`) is skipped the same way and reported.
//! - **Bounded work.** One linear scan. Skipping a value is iterative in
//!   serde_json (`ignore_value`: one byte of scratch per open bracket, no
//!   recursion), so nesting costs at most one byte per body byte and never
//!   the stack; the object itself may have at most [`MAX_MEMBERS`] members.
//!   Peak memory per request is under twice the body: the body, the skip
//!   scratch, the two field strings and at most [`MAX_MEMBERS`] member names.
//! - **No ambiguity.** A member that appears twice (`{"email":"bad",
//!   "email":"ok@x.io"}`, also spelt with escapes, `"em\u0061il"`) is refused
//!   instead of "last one wins": two parsers that disagree on which one counts
//!   are how validation gets bypassed.
//!
//! What a member's value is, is kept apart from what it means: [`Member`]
//! says "absent", "a string" or "some other JSON type"; the handlers turn
//! the latter into field errors listed with the rule errors (422).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The most members a request object may have (a user has two; clients that
/// send a whole user back send five).
pub const MAX_MEMBERS: usize = 32;

/// One request field as found in the body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Member {
    /// Not in the body.
    #[default]
    Absent,
    /// A JSON string.
    Text(String),
    /// Any other JSON value; the name of its type (`null`, `a number`, …).
    Other(&'static str),
}

impl Member {
    /// The string, if the member was one.
    pub fn into_text(self) -> Option<String> {
        match self {
            Member::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A decoded create/patch body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserBody {
    /// `name`.
    pub name: Member,
    /// `email`.
    pub email: Member,
    /// The names of the members that are no field, in body order.
    pub unknown: Vec<String>,
}

/// Why a body was refused before its fields were looked at (400).
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON at all, or cut short, or nested too deep.
    Syntax(serde_json::Error),
    /// JSON, but not an object.
    NotAnObject,
    /// A member appears more than once.
    Duplicate {
        /// Its name.
        member: String,
        /// Where the second one was, from the parser's error.
        at: String,
    },
    /// More than [`MAX_MEMBERS`] members.
    TooManyMembers,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Syntax(e) => write!(f, "the body is not valid JSON: {e}"),
            BodyError::NotAnObject => f.write_str("the body must be a JSON object"),
            BodyError::Duplicate { member, at } => write!(
                f,
                "the body has the member {} more than once ({at}); each member may appear once",
                serde_json::Value::from(member.as_str())
            ),
            BodyError::TooManyMembers => write!(
                f,
                "the body has more than {MAX_MEMBERS} members; a user has name and email"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// Decodes `bytes` (the whole body: trailing non-whitespace is an error).
pub fn decode(bytes: &[u8]) -> Result<UserBody, BodyError> {
    let mut refusal = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = BodySeed {
        refusal: &mut refusal,
    };
    let result = seed.deserialize(&mut de).and_then(|body| {
        de.end()?;
        Ok(body)
    });
    match (result, refusal) {
        (Ok(body), _) => Ok(body),
        (Err(e), Some(Refusal::Duplicate(member))) => Err(BodyError::Duplicate {
            member,
            at: format!("line {} column {}", e.line(), e.column()),
        }),
        (Err(_), Some(Refusal::TooMany)) => Err(BodyError::TooManyMembers),
        (Err(_), Some(Refusal::NotAnObject)) => Err(BodyError::NotAnObject),
        (Err(e), None) => Err(BodyError::Syntax(e)),
    }
}

/// What the visitor refused, passed out beside serde's opaque error.
enum Refusal {
    Duplicate(String),
    TooMany,
    NotAnObject,
}

struct BodySeed<'r> {
    refusal: &'r mut Option<Refusal>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = UserBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UserBody, D::Error> {
        // `deserialize_any`, not `_map`: anything but an object is refused
        // by us (NotAnObject) after skipping it, not by a type error.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = UserBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UserBody, A::Error> {
        let mut body = UserBody::default();
        let mut members = 0usize;
        while let Some(key) = map.next_key::<Key>()? {
            members += 1;
            if members > MAX_MEMBERS {
                *self.refusal = Some(Refusal::TooMany);
                return Err(de::Error::custom("too many members"));
            }
            let duplicate = match &key {
                Key::Name => (body.name != Member::Absent).then_some("name"),
                Key::Email => (body.email != Member::Absent).then_some("email"),
                Key::Other(o) => body.unknown.iter().any(|u| u == o).then_some(o.as_str()),
            };
            if let Some(member) = duplicate {
                *self.refusal = Some(Refusal::Duplicate(member.to_owned()));
                return Err(de::Error::custom("duplicate member"));
            }
            match key {
                Key::Name => body.name = map.next_value_seed(MemberSeed)?,
                Key::Email => body.email = map.next_value_seed(MemberSeed)?,
                Key::Other(other) => {
                    map.next_value::<IgnoredAny>()?;
                    body.unknown.push(other);
                }
            }
        }
        Ok(body)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UserBody, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UserBody, E> {
        self.not_an_object()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UserBody, E> {
        self.not_an_object()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UserBody, E> {
        self.not_an_object()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UserBody, E> {
        self.not_an_object()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<UserBody, E> {
        self.not_an_object()
    }

    fn visit_unit<E: de::Error>(self) -> Result<UserBody, E> {
        self.not_an_object()
    }
}

impl BodySeed<'_> {
    fn not_an_object<E: de::Error>(self) -> Result<UserBody, E> {
        *self.refusal = Some(Refusal::NotAnObject);
        Err(E::custom("not an object"))
    }
}

/// A member name: the two fields without allocating, anything else owned.
enum Key {
    Name,
    Email,
    Other(String),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "name" => Key::Name,
            "email" => Key::Email,
            other => Key::Other(other.to_owned()),
        })
    }
}

/// A field's value: a string is kept, anything else skipped and named.
struct MemberSeed;

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Member, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
        Ok(Member::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Member, E> {
        Ok(Member::Text(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Member, E> {
        Ok(Member::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Member, E> {
        Ok(Member::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Member, E> {
        Ok(Member::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Member, E> {
        Ok(Member::Other("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Member, E> {
        Ok(Member::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Member, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Member::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Member, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Member::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> UserBody {
        decode(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn refused(json: &str) -> BodyError {
        match decode(json.as_bytes()) {
            Ok(b) => panic!("{json} accepted: {b:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn fields_are_read_and_unknown_members_named() {
        let b = ok(r#"{"name":"Ada","x":[[],{"a":[1,{"b":null}]}],"email":"a@b.io","id":7}"#);
        assert_eq!(b.name, Member::Text("Ada".into()));
        assert_eq!(b.email, Member::Text("a@b.io".into()));
        assert_eq!(b.unknown, ["x", "id"]);
        assert_eq!(ok("{}"), UserBody::default());
        assert_eq!(ok(" \n{ } \t").name, Member::Absent);
    }

    #[test]
    fn escapes_are_decoded_in_names_and_values() {
        let b = ok(r#"{"n\u0061me":"A\"d\u00e9 \ud83d\ude00"}"#);
        assert_eq!(b.name, Member::Text("A\"dé 😀".into()));
    }

    #[test]
    fn other_types_are_named_not_fatal() {
        let b = ok(r#"{"name":5,"email":{"a":[1]}}"#);
        assert_eq!(b.name, Member::Other("a number"));
        assert_eq!(b.email, Member::Other("an object"));
        for (json, kind) in [
            (r#"{"name":null}"#, "null"),
            (r#"{"name":true}"#, "a boolean"),
            (r#"{"name":-1.5e3}"#, "a number"),
            (r#"{"name":["Ada"]}"#, "an array"),
        ] {
            assert_eq!(ok(json).name, Member::Other(kind), "{json}");
        }
    }

    #[test]
    fn duplicates_are_refused_however_spelt() {
        for (json, member) in [
            (r#"{"email":"bad","email":"ok@x.io"}"#, "email"),
            (r#"{"name":"a","n\u0061me":"b"}"#, "name"),
            (r#"{"name":1,"name":"b"}"#, "name"),
            (r#"{"x":1,"name":"a","x":[]}"#, "x"),
        ] {
            match refused(json) {
                BodyError::Duplicate { member: m, at } => {
                    assert_eq!(m, member, "{json}");
                    assert!(at.starts_with("line 1 column "), "{at}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
        let shown = refused(r#"{"email":"a","email":"b"}"#).to_string();
        assert!(
            shown.contains(r#"member "email" more than once"#),
            "{shown}"
        );
    }

    #[test]
    fn non_objects_and_bad_json_are_told_apart() {
        for json in ["[]", "[1,[2]]", "42", "\"s\"", "null", "true"] {
            assert!(matches!(refused(json), BodyError::NotAnObject), "{json}");
        }
        for json in [
            "",
            "{",
            "{\"name\":\"a\",}",
            "not json",
            "{\"name\":\"a\"} x",
            "{} {}",
        ] {
            assert!(matches!(refused(json), BodyError::Syntax(_)), "{json}");
        }
        assert!(matches!(
            decode(b"{\"name\":\"\xff\"}"),
            Err(BodyError::Syntax(_))
        ));
    }

    #[test]
    fn members_and_depth_are_bounded() {
        let many: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("\"m{i}\":0")).collect();
        let json = format!("{{{}}}", many.join(","));
        assert!(matches!(refused(&json), BodyError::TooManyMembers));
        let fits = format!("{{{}}}", many[..MAX_MEMBERS].join(","));
        assert_eq!(ok(&fits).unknown.len(), MAX_MEMBERS);
        // Skipping is iterative (one byte of parser scratch per level, no
        // recursion): deep nesting is neither a stack overflow nor a cost.
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(ok(&deep).unknown, ["x"]);
        let deep_field = format!(
            "{{\"name\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(ok(&deep_field).name, Member::Other("an array"));
        // Unbalanced: refused.
        let open = format!("{{\"x\":{}}}", "[".repeat(1000));
        assert!(matches!(refused(&open), BodyError::Syntax(_)));
    }

    #[test]
    fn a_megabyte_of_empty_arrays_is_skipped() {
        let mut json = String::from("{\"name\":\"Ada\",\"x\":[");
        while json.len() < 1 << 20 {
            json.push_str("[],");
        }
        json.push_str("[]]}");
        let b = ok(&json);
        assert_eq!(b.name, Member::Text("Ada".into()));
        assert_eq!(b.unknown, ["x"]);
    }
}
