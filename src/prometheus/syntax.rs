//! The exposition format's names and numbers, as the renderer writes them and the parser
//! reads them back.

/// Formats a sample value or `le` bound so that it parses back to the same `f64`.
///
/// The digits are the shortest that round-trip; plain decimal for magnitudes in
/// `[1e-5, 1e16)` (`0.000131072`, `1`, `68.719476736`), exponent form outside it (`2e-9`,
/// `5.12e-7`), and `+Inf`, `-Inf`, `NaN`. One rule for every value matters for `le`: the
/// bound is part of the series identity, so it must be spelled the same in every scrape.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v != 0.0 && (v.abs() < 1e-5 || v.abs() >= 1e16) {
        format!("{v:e}")
    } else if v == 0.0 {
        "0".into() // not "-0"
    } else {
        format!("{v}")
    }
}

/// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(super) fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
