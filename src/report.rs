//! `ktm probe`: what this machine allows KTM and why not (privileges, mechanisms, links, each
//! plan's attach), as text for a person or one JSON object for a script.

use crate::attach::features::{self, MECHANISMS};
use crate::config::EbpfConfig;
use crate::iomonitor::IoMonitorModule;
use crate::json::str_literal as json;
use crate::module::Module;
use std::io::Write;

/// How [`probe`] writes its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Sections headed `== privileges`, `== mechanisms`, ... for a person.
    Text,
    /// One JSON object on one line (`privileges`, `mechanisms`, `links`, `plans`).
    Json,
}

/// Why [`probe`] could not report everything (`ktm probe` exits 1).
#[derive(Debug)]
pub enum ProbeError {
    /// The privileges KTM needs are missing: the privileges were reported, nothing more.
    NotPrivileged(String),
    /// The iomonitor could not start, so its plans are unknown.
    Start(crate::Error),
    /// The report could not be written.
    Write(std::io::Error),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::NotPrivileged(why) => f.write_str(why),
            ProbeError::Start(e) => write!(f, "{e}"),
            ProbeError::Write(e) => write!(f, "cannot write the report: {e}"),
        }
    }
}

impl std::error::Error for ProbeError {}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> Self {
        ProbeError::Write(e)
    }
}

/// `{"works": true}` or `{"works": false, "why": ...}`.
fn json_result(r: &Result<(), impl std::fmt::Display>) -> String {
    match r {
        Ok(()) => "{\"works\":true}".into(),
        Err(why) => format!("{{\"works\":false,\"why\":{}}}", json(&why.to_string())),
    }
}

fn json_pairs(pairs: &[(crate::attach::AttachPoint, String)], key: &str) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(p, why)| format!("{{\"point\":{},\"{key}\":{}}}", json(&p.to_string()), json(why)))
        .collect();
    format!("[{}]", items.join(","))
}

/// Writes the report to `out`: the privileges first; without them, only those (and the
/// error), else the mechanisms, links and the iomonitor's attach plans, found by starting it.
pub fn probe(format: Format, out: &mut dyn Write) -> Result<(), ProbeError> {
    use crate::privileges::{self as p, Syscall};
    let caps: Vec<(&str, Option<bool>)> = [p::CAP_BPF, p::CAP_PERFMON, p::CAP_SYS_ADMIN]
        .iter()
        .map(|c| (c.name, p::effective().ok().map(|eff| eff & (1u64 << c.bit) != 0)))
        .collect();
    let seccomp = p::seccomp().map_or_else(|| "unknown".to_string(), |s| s.to_string());
    let blocked = [("bpf()", p::blocked(Syscall::Bpf)), ("perf_event_open()", p::blocked(Syscall::PerfEventOpen))];
    let lockdown = p::lockdown().unwrap_or_else(|why| why);
    let paranoid = p::perf_event_paranoid().map(|(level, meaning)| format!("{level}: {meaning}"));
    let privileged = p::check().map_err(|e| e.to_string());
    let as_json = format == Format::Json;
    if !as_json {
        writeln!(out, "== privileges")?;
        for (name, has) in &caps {
            let word = match has {
                Some(true) => "present",
                Some(false) => "missing",
                None => "unknown (cannot read capabilities)",
            };
            writeln!(out, "{name:<18} {word}")?;
        }
        writeln!(out, "{:<18} {seccomp}", "seccomp")?;
        for (name, b) in blocked {
            writeln!(
                out,
                "{name:<18} {}",
                if b { "BLOCKED (refused before its arguments are read)" } else { "allowed" }
            )?;
        }
        writeln!(out, "{:<18} {lockdown}", "lockdown")?;
        writeln!(out, "{:<18} {}", "perf_event_paranoid", paranoid.clone().unwrap_or_else(|why| why))?;
        match p::Held::current() {
            Ok(h) => writeln!(out, "{:<18} {h}", "this process")?,
            Err(e) => writeln!(out, "{:<18} unknown: {e}", "this process")?,
        }
        writeln!(
            out,
            "{:<18} {}",
            "after start",
            match crate::lockdown::map_reads_need_capability() {
                Ok(false) => "ktm run drops every capability and installs its seccomp filter",
                Ok(true) =>
                    "ktm run keeps CAP_BPF alone (this kernel refuses map reads without it) and installs its seccomp filter",
                Err(_) => "ktm run drops capabilities and installs its seccomp filter (map-read probe failed)",
            }
        )?;
    }
    if let Err(e) = &privileged {
        if as_json {
            writeln!(out, "{{\"privileges\":{{\"ok\":false,\"why\":{}}}}}", json(e))?;
        }
        return Err(ProbeError::NotPrivileged(e.clone()));
    }
    let f = crate::attach::mechanisms();
    let links = [crate::attach::Link::PerfEvent, crate::attach::Link::Tracing, crate::attach::Link::KprobeMulti];
    let mut module = IoMonitorModule::new(EbpfConfig::default());
    module.start().map_err(ProbeError::Start)?;
    let reports: Vec<crate::attach::PlanReport> =
        module.monitor().map(|m| m.reports().cloned().collect()).unwrap_or_default();
    module.stop();
    if as_json {
        let caps: Vec<String> =
            caps.iter().map(|(n, h)| format!("{}:{}", json(n), h.map_or("null".into(), |b| b.to_string()))).collect();
        let blocked: Vec<String> = blocked.iter().map(|(n, b)| format!("{}:{b}", json(n))).collect();
        let mechs: Vec<String> =
            MECHANISMS.iter().map(|m| format!("{}:{}", json(m.name()), json_result(&f.get(*m)))).collect();
        let links: Vec<String> = links
            .iter()
            .map(|l| {
                let r = features::link(*l).map_err(|why| format!("{why}; {} instead", l.fallback()));
                format!("{}:{}", json(&format!("{l:?}")), json_result(&r))
            })
            .collect();
        let plans: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":{},\"attached\":{},\"mechanism\":{},\"failures\":{},\"fallbacks\":{},\"unchecked\":{}}}",
                    json(&r.name),
                    r.attached.as_ref().map_or("null".into(), |p| json(&p.to_string())),
                    r.attached.as_ref().map_or("null".into(), |p| json(p.mechanism().name())),
                    json_pairs(&r.failures, "why"),
                    json_pairs(&r.fallbacks, "note"),
                    json_pairs(&r.unchecked, "why"),
                )
            })
            .collect();
        writeln!(
            out,
            "{{\"version\":{},\"privileges\":{{\"ok\":true,\"capabilities\":{{{}}},\"seccomp\":{},\"blocked\":{{{}}},\"lockdown\":{},\"perf_event_paranoid\":{}}},\"mechanisms\":{{{}}},\"links\":{{{}}},\"plans\":[{}]}}",
            json(env!("CARGO_PKG_VERSION")),
            caps.join(","),
            json(&seccomp),
            blocked.join(","),
            json(&lockdown),
            json(&paranoid.unwrap_or_else(|why| why)),
            mechs.join(","),
            links.join(","),
            plans.join(",")
        )?;
        return Ok(());
    }
    writeln!(out, "\n== mechanisms (each tried with a trivial program)")?;
    for m in MECHANISMS {
        match f.get(m) {
            Ok(()) => writeln!(out, "{:<15} works", m.name())?,
            Err(why) => writeln!(out, "{:<15} unavailable: {why}", m.name())?,
        }
    }
    writeln!(out, "\n== links (each probed once; the fallback is used where one is missing)")?;
    for l in links {
        match features::link(l) {
            Ok(()) => writeln!(out, "{:<15} works", format!("{l:?}"))?,
            Err(why) => writeln!(out, "{:<15} unavailable, {} instead: {why}", format!("{l:?}"), l.fallback())?,
        }
    }
    writeln!(out, "\n== attach plans (preferred first)")?;
    for r in &reports {
        match &r.attached {
            Some(p) => writeln!(out, "{}: {} ({p})", r.name, p.mechanism())?,
            None => writeln!(out, "{}: UNAVAILABLE", r.name)?,
        }
        for (p, why) in &r.failures {
            writeln!(out, "    {p} failed: {why}")?;
        }
        for (p, note) in &r.fallbacks {
            writeln!(out, "    {p} attached by {note}")?;
        }
        for (p, why) in &r.unchecked {
            writeln!(out, "    {p} not checked to fire: {why}")?;
        }
    }
    Ok(())
}
