//! The text tables the bench prints, and how figures are written in them and in the JSON.

use super::harness::median;
use super::json::J;

/// A text table with a title; the first column left-aligned, the rest right-aligned.
pub struct Table {
    title: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, head: &[&str]) -> Table {
        Table { title: title.into(), head: head.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.head.len();
        let mut w = vec![0; cols];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        // Text columns left, figures right.
        let left: Vec<bool> = (0..cols)
            .map(|i| {
                i == 0
                    || self.rows.iter().any(|r| {
                        r.get(i).and_then(|c| c.chars().next()).is_some_and(|ch| ch.is_alphabetic() || ch == '(')
                    })
            })
            .collect();
        let line = |r: &Vec<String>| {
            let mut s = String::new();
            for (i, width) in w.iter().enumerate() {
                let c = r.get(i).map_or("", |c| c.as_str());
                if i == 0 {
                    s.push_str(&format!("{c:<width$}"));
                } else if left[i] {
                    s.push_str(&format!("  {c:<width$}"));
                } else {
                    s.push_str(&format!("  {c:>width$}"));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = format!("\n## {}\n", self.title);
        out.push_str(&line(&self.head));
        out.push_str(&format!("{}\n", "-".repeat(w.iter().sum::<usize>() + 2 * (cols - 1))));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// `x` as `write` puts it, or `-` where it is not a number (nothing measured).
fn finite(x: f64, write: impl Fn(f64) -> String) -> String {
    if x.is_finite() {
        write(x)
    } else {
        "-".into()
    }
}

pub fn f0(x: f64) -> String {
    finite(x, |x| format!("{x:.0}"))
}

pub fn f1(x: f64) -> String {
    finite(x, |x| format!("{x:.1}"))
}

pub fn f3(x: f64) -> String {
    finite(x, |x| format!("{x:.3}"))
}

pub fn ratio(x: f64) -> String {
    finite(x, |x| format!("{x:.2}x"))
}

pub fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// Median, min and max of samples as JSON.
pub fn dist(v: &[f64]) -> J {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    J::obj().with("median", median(v)).with("min", min).with("max", max).with("n", v.len())
}

pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "..."
    }
}
