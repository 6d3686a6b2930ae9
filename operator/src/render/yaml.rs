//! The YAML `render` prints: serde_yaml's layout, but every string a YAML 1.1 reader (kubectl's
//! go-yaml, PyYAML) would read as something else — `yes`, `no`, `on`, `off`, `y`, `n` in any
//! case, `~`, `null`, numbers such as `0755`, `1_000` or `1:20`, dates, `<<`, `=` — is quoted,
//! so every reader reads the objects the operator would apply.
//!
//! serde_yaml decides quoting by YAML 1.2 alone (it writes `- yes`, which YAML 1.1 reads as
//! `true`) and cannot be told otherwise, so this module lays out the document itself and leaves
//! each scalar's own text to serde_yaml unless a YAML 1.1 reader would misread it.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;
use serde_yaml::{Mapping, Value};

/// `object` as one YAML document (without the `---` line).
pub fn to_string<T: Serialize>(object: &T) -> Result<String, serde_yaml::Error> {
    let value = serde_yaml::to_value(object)?;
    let mut out = String::new();
    match &value {
        Value::Mapping(map) if !map.is_empty() => mapping(map, 0, false, &mut out)?,
        Value::Sequence(items) if !items.is_empty() => sequence(items, 0, false, &mut out)?,
        scalar => {
            out.push_str(&self::scalar(scalar, 0)?);
            out.push('\n');
        }
    }
    Ok(out)
}

/// The entries of a non-empty mapping whose keys sit at column `indent`; with `inline` the first
/// key follows a `- ` already written.
fn mapping(
    map: &Mapping,
    indent: usize,
    inline: bool,
    out: &mut String,
) -> Result<(), serde_yaml::Error> {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&scalar(key, indent)?);
        out.push(':');
        match value {
            Value::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(inner, indent + 2, false, out)?;
            }
            // libyaml's layout: a sequence in a mapping is not indented further.
            Value::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                sequence(items, indent, false, out)?;
            }
            value => {
                out.push(' ');
                out.push_str(&scalar(value, indent)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

/// The items of a non-empty sequence whose dashes sit at column `indent`; with `inline` the first
/// dash follows a `- ` already written.
fn sequence(
    items: &[Value],
    indent: usize,
    inline: bool,
    out: &mut String,
) -> Result<(), serde_yaml::Error> {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Mapping(inner) if !inner.is_empty() => mapping(inner, indent + 2, true, out)?,
            Value::Sequence(inner) if !inner.is_empty() => sequence(inner, indent + 2, true, out)?,
            item => {
                out.push_str(&scalar(item, indent)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

/// A scalar (or an empty collection) written after a key or a dash at column `indent`, without
/// the final line break; a block scalar's lines are indented below that column.
fn scalar(value: &Value, indent: usize) -> Result<String, serde_yaml::Error> {
    if let Value::String(s) = value
        && yaml11_reads_otherwise(s)
    {
        // None of these strings holds a `'`, which single quotes would have to double.
        return Ok(format!("'{s}'"));
    }
    let text = serde_yaml::to_string(value)?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    // serde_yaml indents a top-level block scalar's lines by 2; nested, they go 2 deeper than
    // the key or dash they belong to. Empty lines stay empty.
    let mut lines = text.split('\n');
    let mut shifted = lines.next().unwrap_or_default().to_string();
    for line in lines {
        shifted.push('\n');
        if !line.is_empty() {
            shifted.push_str(&" ".repeat(indent));
            shifted.push_str(line);
        }
    }
    Ok(shifted)
}

/// Whether a YAML 1.1 reader would read `s`, written plain, as a boolean, null, number, date,
/// merge key or value key; the patterns are PyYAML's implicit resolvers, widened by go-yaml
/// v2's (`y`/`n`, any case, integers and floats as Go parses them).
fn yaml11_reads_otherwise(s: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            let alternatives = [
                // booleans and null, in any case
                r"(?i:y|yes|n|no|true|false|on|off|~|null)",
                // integers: binary, octal, decimal, hexadecimal, sexagesimal
                r"[-+]?0[bB][01_]+",
                r"[-+]?0[oO]?[0-7_]+",
                r"[-+]?[0-9][0-9_]*",
                r"[-+]?0[xX][0-9a-fA-F_]+",
                r"[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
                // floats: YAML 1.1 and 1.2 spellings, sexagesimal, infinities and NaN
                r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?",
                r"[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?",
                r"[-+]?[0-9]+[eE][-+]?[0-9]+",
                r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
                r"[-+]?\.(?i:inf|nan)",
                // dates and times
                r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
                r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?",
                // the merge key and the value key
                r"<<|=",
            ];
            let pattern = format!("^(?:{})?$", alternatives.join("|"));
            // A constant pattern: a test compiles it.
            Regex::new(&pattern).unwrap_or_else(|e| unreachable!("{e}"))
        })
        .is_match(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_yaml_1_1_reads_otherwise_are_quoted() {
        for s in [
            "yes",
            "Yes",
            "YES",
            "yEs",
            "no",
            "NO",
            "on",
            "On",
            "off",
            "OFF",
            "y",
            "Y",
            "n",
            "N",
            "true",
            "False",
            "~",
            "null",
            "Null",
            "",
            "0755",
            "0o17",
            "0x1F",
            "0b101",
            "1_000",
            "08",
            "-1",
            "+1",
            "1e3",
            "1E3",
            ".5",
            "-.5",
            "1.",
            "1.5",
            "1:20",
            "1:20:30",
            "190:20:30.15",
            ".inf",
            "-.Inf",
            ".NaN",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "<<",
            "=",
        ] {
            assert!(yaml11_reads_otherwise(s), "{s:?}");
            let text = to_string(&vec![s]).expect("yaml");
            assert_eq!(text, format!("- '{s}'\n"));
        }
    }

    #[test]
    fn other_strings_are_left_to_serde_yaml() {
        for s in [
            "0.1.0",
            "v1",
            "yesterday",
            "1a",
            "-",
            ".",
            "a:b",
            "10Gi",
            "500m",
            "0.1.0+b",
        ] {
            assert!(!yaml11_reads_otherwise(s), "{s:?}");
        }
        // Quoting for other reasons is serde_yaml's.
        assert_eq!(
            to_string(&vec!["a: b", "#x"]).expect("yaml"),
            "- 'a: b'\n- '#x'\n"
        );
    }

    #[test]
    fn the_layout_is_serde_yamls() {
        let value: Value = serde_yaml::from_str(
            r#"
k:
- "x\ny"
- - "p\nq"
  - z
- {}
- []
m:
- c: "l1\nl2\n\nl4"
  d: null
  e: { f: [1, 2.5, true] }
e: "trailing \nx"
g: "x\n\n"
h: "  a\nb\n"
"#,
        )
        .expect("yaml");
        assert_eq!(
            to_string(&value).expect("yaml"),
            serde_yaml::to_string(&value).expect("yaml")
        );
    }
}
