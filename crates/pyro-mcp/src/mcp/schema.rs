//! The JSON Schemas `tools/list` carries, made from the argument and result types
//! (schemars) so they cannot drift from the code, then shrunk to fit the listing budgets
//! (`tools::TOOLS_LIST_BUDGET`, `tools::FULL_TOOLS_LIST_BUDGET`).
//!
//! `reduce` keeps the top-level properties with their JSON type only, plus on inputs the
//! range, a numeric default and a description of at most `MAX_DESCRIPTION` characters
//! (longer doc comments are for code readers), and `required` on inputs only (error results
//! must validate against output schemas too). Output schemas keep the fields a model acts on.

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Longest property description listed; a longer doc comment is for code readers.
pub const MAX_DESCRIPTION: usize = 40;

/// The generated schema of `T`, whole (for `reduce`, and for the tests that compare the
/// listed schemas with the types).
pub fn of<T: JsonSchema>() -> schemars::Schema {
    schemars::schema_for!(T)
}

/// The JSON type of a generated property: `Option<T>` reads as T, references and
/// enums of strings as what they resolve to.
fn type_of(p: &Value, defs: &Map<String, Value>) -> Option<Value> {
    match p.get("type") {
        Some(Value::String(t)) => return Some(json!(t)),
        Some(Value::Array(ts)) => {
            let ts: Vec<&Value> = ts.iter().filter(|t| *t != "null").collect();
            return Some(if ts.len() == 1 { ts[0].clone() } else { json!(ts) });
        }
        _ => {}
    }
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return defs.get(name).and_then(|d| type_of(d, defs));
    }
    if p.get("enum").is_some() || p.get("const").is_some() {
        return Some(json!("string"));
    }
    let variants = p.get("anyOf").or_else(|| p.get("oneOf"))?.as_array()?;
    variants.iter().find(|v| v.get("type").is_none_or(|t| t != "null")).and_then(|v| type_of(v, defs))
}

/// What an input property keeps besides its type: its range (without the `minimum: 0` every
/// unsigned integer gets, which serde enforces anyway), a numeric default (serde's `false`,
/// `{}` and `[]` defaults only cost bytes) and a short description.
fn input_extras(p: &Value, out: &mut Map<String, Value>) {
    let unsigned = p.get("format").and_then(Value::as_str).is_some_and(|f| f.starts_with("uint"));
    for k in ["minimum", "maximum"] {
        match p.get(k) {
            Some(x) if !(k == "minimum" && unsigned && x == 0) => out.insert(k.into(), x.clone()),
            _ => None,
        };
    }
    if let Some(d) = p.get("default").filter(|d| d.is_number()) {
        out.insert("default".into(), d.clone());
    }
    if let Some(d) = p.get("description").and_then(Value::as_str).filter(|d| d.len() <= MAX_DESCRIPTION) {
        out.insert("description".into(), json!(d));
    }
}

/// Shrink a generated schema to the top-level properties' types (see the module docs).
pub fn reduce(schema: schemars::Schema, input: bool) -> JsonObject {
    let v = schema.to_value();
    let empty = Map::new();
    let defs = v.get("$defs").and_then(Value::as_object).unwrap_or(&empty);
    let mut props = Map::new();
    for (name, p) in v.get("properties").and_then(Value::as_object).unwrap_or(&empty) {
        let mut out = Map::new();
        if let Some(t) = type_of(p, defs) {
            out.insert("type".into(), t);
        }
        if input {
            input_extras(p, &mut out);
        }
        props.insert(name.clone(), Value::Object(out));
    }
    let mut o = JsonObject::new();
    o.insert("type".into(), "object".into());
    o.insert("properties".into(), Value::Object(props));
    if let Some(r) = v.get("required").filter(|r| input && r.as_array().is_some_and(|a| !a.is_empty())) {
        o.insert("required".into(), r.clone());
    }
    o
}

/// An output schema: the result's reduced schema with only the `keep` properties.
pub fn output(result: schemars::Schema, keep: &[&str]) -> JsonObject {
    let mut o = reduce(result, false);
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        props.retain(|k, _| keep.contains(&k.as_str()));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_inlines_options_refs_and_enums() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct S {
            /// a description longer than the forty characters kept on inputs
            a: Option<u64>,
            b: Option<crate::session::Cleanup>,
            c: super::super::source::SeedSource,
            d: Vec<String>,
            /// short
            #[schemars(range(min = 1, max = 9), extend("default" = 3))]
            e: i32,
        }
        let o = reduce(of::<S>(), true);
        assert_eq!(
            Value::Object(o),
            json!({"type": "object", "required": ["c", "d", "e"], "properties": {
                "a": {"type": "integer"}, "b": {"type": "object"}, "c": {"type": "object"}, "d": {"type": "array"},
                "e": {"type": "integer", "minimum": 1, "maximum": 9, "default": 3, "description": "short"}
            }})
        );
        let out = output(of::<S>(), &["a", "e"]);
        assert_eq!(
            Value::Object(out),
            json!({"type": "object", "properties": {"a": {"type": "integer"}, "e": {"type": "integer"}}})
        );
    }
}
