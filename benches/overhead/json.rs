//! A minimal JSON value and writer (the crate has no JSON dependency).

use std::fmt::{self, Write};

/// A JSON value.
#[derive(Clone, Debug)]
pub enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    /// An empty object.
    pub fn obj() -> J {
        J::Obj(Vec::new())
    }

    /// Adds `key: value` to an object (no-op on other values).
    pub fn set(&mut self, key: &str, value: impl Into<J>) -> &mut J {
        if let J::Obj(v) = self {
            v.push((key.to_string(), value.into()));
        }
        self
    }

    /// Builder form of [`J::set`].
    pub fn with(mut self, key: &str, value: impl Into<J>) -> J {
        self.set(key, value);
        self
    }

    fn write(&self, out: &mut String, indent: usize) -> fmt::Result {
        let pad = |out: &mut String, n: usize| out.push_str(&"  ".repeat(n));
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => write!(out, "{b}")?,
            J::Num(x) if x.is_finite() => {
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    write!(out, "{}", *x as i64)?
                } else {
                    write!(out, "{x:.3}")?
                }
            }
            J::Num(_) => out.push_str("null"),
            J::Str(s) => ktm::json::push_str_literal(out, s),
            J::Arr(v) if v.is_empty() => out.push_str("[]"),
            J::Arr(v) => {
                out.push_str("[\n");
                for (i, x) in v.iter().enumerate() {
                    pad(out, indent + 1);
                    x.write(out, indent + 1)?;
                    out.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            J::Obj(v) if v.is_empty() => out.push_str("{}"),
            J::Obj(v) => {
                out.push_str("{\n");
                for (i, (k, x)) in v.iter().enumerate() {
                    pad(out, indent + 1);
                    J::Str(k.clone()).write(out, indent + 1)?;
                    out.push_str(": ");
                    x.write(out, indent + 1)?;
                    out.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
        }
        Ok(())
    }
}

impl fmt::Display for J {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write(&mut s, 0)?;
        f.write_str(&s)
    }
}

impl From<f64> for J {
    fn from(x: f64) -> J {
        J::Num(x)
    }
}

impl From<u64> for J {
    fn from(x: u64) -> J {
        J::Num(x as f64)
    }
}

impl From<usize> for J {
    fn from(x: usize) -> J {
        J::Num(x as f64)
    }
}

impl From<bool> for J {
    fn from(x: bool) -> J {
        J::Bool(x)
    }
}

impl From<&str> for J {
    fn from(x: &str) -> J {
        J::Str(x.to_string())
    }
}

impl From<String> for J {
    fn from(x: String) -> J {
        J::Str(x)
    }
}

impl<T: Into<J>> From<Option<T>> for J {
    fn from(x: Option<T>) -> J {
        x.map_or(J::Null, Into::into)
    }
}

impl<T: Into<J>> From<Vec<T>> for J {
    fn from(x: Vec<T>) -> J {
        J::Arr(x.into_iter().map(Into::into).collect())
    }
}
