//! JSON string literals, the one escaper of the crate's hand-written JSON (`ktm probe --json`,
//! the benches' reports): the crate takes no JSON dependency, and what it writes is a few
//! objects of names and numbers.

use std::fmt::Write;

/// Appends `s` to `out` as a JSON string literal: quoted, with `"`, `\` and control
/// characters escaped (`\n` by name, the rest as `\u00XX`).
pub fn push_str_literal(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            // Writing to a String cannot fail.
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal ([`push_str_literal`]).
pub fn str_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str_literal(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(str_literal("plain"), "\"plain\"");
        assert_eq!(str_literal("a\"b\\c\nd\te\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0009e\\u0001é\"");
        let parsed: String = serde_yaml::from_str(&str_literal("x\"\\\n\t\u{1f}y")).unwrap();
        assert_eq!(parsed, "x\"\\\n\t\u{1f}y", "a JSON (YAML) parser reads back the text");
    }
}
