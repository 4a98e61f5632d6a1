//! Prometheus exposition of pushed batches: rendered, parsed back by the strict parser and
//! checked value by value; the parser's rejections; the recorder feeding it across threads.

use ktm::catalogue as c;
use ktm::metrics::{
    Batch, Bucket, Histogram, Metric, MetricSource, MetricValue, ModuleState, ModuleStatus, LOG2_NS_SLOTS,
};
use ktm::prometheus::{self, Family, MetricType, ParseError};
use ktm::recorder::{FlightRecorder, FnRecorder, MemoryRecorder};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ADVICE: [&str; 7] = c::ADVICE_VALUES;
const NASTY: &str = "a\"b\\c\nd";

fn family<'a>(fams: &'a [Family], name: &str) -> &'a Family {
    fams.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no family {name}"))
}

fn read_slots() -> Vec<u64> {
    let mut slots = vec![0u64; LOG2_NS_SLOTS];
    slots[0] = 3; // 0-1 ns
    slots[8] = 100; // [256, 512) ns: cached reads
    slots[9] = 50;
    slots[20] = 7; // ~1 ms: disk
    slots[34] = 1; // [2^34, 2^35) ns ~ 17-34 s: above the 16 s the design requires
    slots[LOG2_NS_SLOTS - 1] = 2; // >= 2^36 ns: only in +Inf
    slots
}

fn pread_slots() -> Vec<u64> {
    (0..LOG2_NS_SLOTS as u64).map(|i| i % 3).collect()
}

/// A batch like the iomonitor's, with nasty strings and repeated series mixed in.
fn sample_batch() -> Batch {
    let mut metrics = vec![
        Metric::counter(c::CACHE_READ_ATTEMPTS.name, "Page-cache lookups by the target's buffered reads.", 1000),
        Metric::counter(c::CACHE_MISSES.name, "Lookups that found no cached data.", 42),
    ];
    for (i, a) in ADVICE.iter().enumerate() {
        metrics.push(
            Metric::counter(c::FADVISE_ADVICE.name, "fadvise calls by advice.", 10 + i as u64).with_label("advice", *a),
        );
        // Families interleaved with another family: must still come out grouped.
        if i == 2 {
            metrics.push(Metric::counter(c::FADVISE_CALLS.name, "fadvise calls.", 77));
        }
    }
    metrics.push(Metric::histogram(
        c::SYS_READ_LATENCY.name,
        "Latency of read(2).",
        Histogram::from_log2_ns(&read_slots(), 123_456_789),
    ));
    metrics.push(Metric::histogram(
        c::SYS_PREAD_LATENCY.name,
        "Latency of pread64(2).",
        Histogram::from_log2_ns(&pread_slots(), 5),
    ));
    metrics.push(Metric::gauge("ktm_test_gauge", "A gauge with a nasty \\ help\nsecond line.", -2.5));
    metrics.push(Metric::gauge("ktm_test_gauge", "", 1e-7).with_label("what", NASTY));
    metrics.push(Metric::gauge("ktm_test_gauge", "", 3e300).with_label("what", "big").with_label("unit", "x"));
    // Same series as the one above with labels in another order: later wins.
    metrics.push(Metric::gauge("ktm_test_gauge", "", 4.0).with_label("unit", "x").with_label("what", "big"));
    // A repeated counter: later wins, emitted once.
    metrics.push(Metric::counter(c::CACHE_MISSES.name, "Lookups that found no cached data.", 43));
    let status = vec![
        ModuleStatus::new("iomonitor", ModuleState::Degraded)
            .with_reason("kprobes unavailable: kernel built without CONFIG_KPROBES")
            .with_scope("cgroup /sys/fs/cgroup/banyand (id 123)")
            .with_source(MetricSource::attached(c::CACHE_MISSES.name, "tracepoint", "filemap:mm_filemap_get_pages"))
            .with_source(MetricSource::attached(c::SYS_READ_LATENCY.name, "raw_tracepoint", "sys_enter/sys_exit"))
            .with_source(MetricSource::unavailable(c::MEMORY_LRU_PAGES_SCANNED.name, NASTY)),
        ModuleStatus::new("other", ModuleState::WaitingForTarget),
    ];
    Batch { timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123), metrics, status }
}

#[test]
fn rendered_batch_parses_back_to_every_value() {
    let text = prometheus::render(&sample_batch());
    let fams = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // Families grouped, in first-appearance order, status last.
    let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            c::CACHE_READ_ATTEMPTS.name,
            c::CACHE_MISSES.name,
            c::FADVISE_ADVICE.name,
            c::FADVISE_CALLS.name,
            c::SYS_READ_LATENCY.name,
            c::SYS_PREAD_LATENCY.name,
            "ktm_test_gauge",
            c::MODULE_STATE.name,
            c::METRIC_SOURCE.name,
        ]
    );
    assert_eq!(text.matches("# TYPE ").count(), names.len());
    assert_eq!(text.matches("# HELP ").count(), names.len());

    // Counters keep their names and type.
    let attempts = family(&fams, c::CACHE_READ_ATTEMPTS.name);
    assert_eq!(attempts.kind, MetricType::Counter);
    assert_eq!(attempts.help.as_deref(), Some("Page-cache lookups by the target's buffered reads."));
    assert_eq!(attempts.value(c::CACHE_READ_ATTEMPTS.name, &[]), Some(1000.0));
    let misses = family(&fams, c::CACHE_MISSES.name);
    assert_eq!(misses.samples.len(), 1, "repeated series emitted once");
    assert_eq!(misses.value(c::CACHE_MISSES.name, &[]), Some(43.0), "later wins");
    assert_eq!(family(&fams, c::FADVISE_CALLS.name).value(c::FADVISE_CALLS.name, &[]), Some(77.0));
    let advice = family(&fams, c::FADVISE_ADVICE.name);
    assert_eq!(advice.kind, "counter");
    assert_eq!(advice.samples.len(), ADVICE.len());
    for (i, a) in ADVICE.iter().enumerate() {
        assert_eq!(advice.value(c::FADVISE_ADVICE.name, &[("advice", a)]), Some(10.0 + i as f64), "{a}");
    }

    // Histograms.
    for (name, slots, sum_ns) in
        [(c::SYS_READ_LATENCY.name, read_slots(), 123_456_789u64), (c::SYS_PREAD_LATENCY.name, pread_slots(), 5)]
    {
        let h = family(&fams, name);
        assert_eq!(h.kind, MetricType::Histogram);
        let buckets: Vec<_> = h.samples.iter().filter(|s| s.name == format!("{name}_bucket")).collect();
        assert_eq!(buckets.len(), LOG2_NS_SLOTS, "{name}: 36 finite buckets and +Inf, empty ones included");
        let mut cumulative = 0u64;
        for (i, b) in buckets[..LOG2_NS_SLOTS - 1].iter().enumerate() {
            cumulative += slots[i];
            let le: f64 = b.labels["le"].parse().unwrap();
            // Slot i holds [2^i, 2^(i+1)) ns: its true upper bound, in seconds.
            assert_eq!(le, (1u64 << (i + 1)) as f64 / 1e9, "{name}: le of slot {i}");
            assert_eq!(b.value, cumulative as f64, "{name}: cumulative at slot {i}");
        }
        let total: u64 = slots.iter().sum();
        assert_eq!(buckets[LOG2_NS_SLOTS - 1].labels["le"], "+Inf");
        assert_eq!(buckets[LOG2_NS_SLOTS - 1].value, total as f64);
        assert_eq!(h.value(&format!("{name}_count"), &[]), Some(total as f64));
        assert_eq!(h.value(&format!("{name}_sum"), &[]), Some(sum_ns as f64 / 1e9));
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    }
    // Exact spellings of a few bounds: exact decimals of 2^(i+1) ns, shortest round-trip.
    let read = family(&fams, c::SYS_READ_LATENCY.name);
    let les: Vec<&str> = read.samples.iter().filter_map(|s| s.labels.get("le").map(String::as_str)).collect();
    assert_eq!(les[0], "2e-9");
    assert_eq!(les[8], "5.12e-7");
    assert_eq!(les[9], "1.024e-6");
    assert_eq!(les[16], "0.000131072");
    assert_eq!(les[33], "17.179869184");
    assert_eq!(les[35], "68.719476736");
    // The 2^36+ ns slot is only in +Inf; the 2^34 ns one (above 16 s) has a finite bucket.
    assert_eq!(read.value(&format!("{}_bucket", c::SYS_READ_LATENCY.name), &[("le", "34.359738368")]), Some(161.0));
    assert_eq!(read.value(&format!("{}_bucket", c::SYS_READ_LATENCY.name), &[("le", "68.719476736")]), Some(161.0));
    assert_eq!(read.value(&format!("{}_count", c::SYS_READ_LATENCY.name), &[]), Some(163.0));

    // Gauges, escaping, dedupe with labels in another order.
    let g = family(&fams, "ktm_test_gauge");
    assert_eq!(g.kind, MetricType::Gauge);
    assert_eq!(g.help.as_deref(), Some("A gauge with a nasty \\ help\nsecond line."));
    assert_eq!(g.samples.len(), 3);
    assert_eq!(g.value("ktm_test_gauge", &[]), Some(-2.5));
    assert_eq!(g.value("ktm_test_gauge", &[("what", NASTY)]), Some(1e-7));
    assert_eq!(g.value("ktm_test_gauge", &[("what", "big"), ("unit", "x")]), Some(4.0));
    assert!(text.contains(r#"what="a\"b\\c\nd""#), "{text}");
    assert!(text.contains("# HELP ktm_test_gauge A gauge with a nasty \\\\ help\\nsecond line.\n"));

    // Status.
    let state = family(&fams, c::MODULE_STATE.name);
    assert_eq!(state.kind, MetricType::Gauge);
    assert_eq!(state.samples.len(), 2);
    assert_eq!(
        state.value(
            c::MODULE_STATE.name,
            &[
                ("module", "iomonitor"),
                ("state", "degraded"),
                ("reason", "kprobes unavailable: kernel built without CONFIG_KPROBES"),
                ("scope", "cgroup /sys/fs/cgroup/banyand (id 123)"),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(state.value(c::MODULE_STATE.name, &[("module", "other"), ("state", "waiting_for_target")]), Some(1.0));
    let sources = family(&fams, c::METRIC_SOURCE.name);
    assert_eq!(sources.samples.len(), 3);
    let src = |metric: &str| -> BTreeMap<String, String> {
        sources.samples.iter().find(|s| s.labels["metric"] == metric).unwrap().labels.clone()
    };
    assert_eq!(src(c::CACHE_MISSES.name)["mechanism"], "tracepoint");
    assert_eq!(src(c::CACHE_MISSES.name)["detail"], "filemap:mm_filemap_get_pages");
    assert_eq!(src(c::CACHE_MISSES.name)["module"], "iomonitor");
    assert_eq!(src(c::SYS_READ_LATENCY.name)["mechanism"], "raw_tracepoint");
    assert_eq!(src(c::MEMORY_LRU_PAGES_SCANNED.name)["mechanism"], "unavailable");
    assert_eq!(src(c::MEMORY_LRU_PAGES_SCANNED.name)["detail"], NASTY);
    assert!(sources.samples.iter().all(|s| s.value == 1.0));

    // No sample timestamps by default.
    assert!(fams.iter().flat_map(|f| &f.samples).all(|s| s.timestamp_ms.is_none()));
}

#[test]
fn timestamps_are_optional_and_parse_back() {
    let batch = sample_batch();
    let plain = prometheus::parse_samples(&prometheus::render(&batch)).unwrap();
    let stamped = prometheus::parse_samples(&prometheus::render_with_timestamps(&batch)).unwrap();
    assert_eq!(plain.len(), stamped.len());
    for (p, s) in plain.iter().zip(&stamped) {
        assert_eq!(s.timestamp_ms, Some(1_700_000_000_123));
        assert_eq!((&p.name, &p.labels), (&s.name, &s.labels));
        assert!(p.value == s.value || (p.value.is_nan() && s.value.is_nan()));
    }
}

#[test]
fn special_values_round_trip() {
    let batch = Batch::new(
        vec![
            Metric::gauge("g", "g", f64::NAN).with_label("v", "nan"),
            Metric::gauge("g", "g", f64::INFINITY).with_label("v", "inf"),
            Metric::gauge("g", "g", f64::NEG_INFINITY).with_label("v", "-inf"),
            Metric::gauge("g", "g", -0.0).with_label("v", "-0"),
            Metric::gauge("g", "g", f64::MIN_POSITIVE).with_label("v", "tiny"),
            Metric::gauge("g", "g", f64::MAX).with_label("v", "max"),
            Metric::gauge("g", "g", 0.1 + 0.2).with_label("v", "sum"),
            Metric::counter("c_total", "c", u64::MAX),
        ],
        vec![],
    );
    let text = prometheus::render(&batch);
    let fams = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let g = family(&fams, "g");
    assert!(g.value("g", &[("v", "nan")]).unwrap().is_nan());
    assert_eq!(g.value("g", &[("v", "inf")]), Some(f64::INFINITY));
    assert_eq!(g.value("g", &[("v", "-inf")]), Some(f64::NEG_INFINITY));
    assert_eq!(g.value("g", &[("v", "-0")]), Some(0.0));
    assert_eq!(g.value("g", &[("v", "tiny")]), Some(f64::MIN_POSITIVE));
    assert_eq!(g.value("g", &[("v", "max")]), Some(f64::MAX));
    assert_eq!(g.value("g", &[("v", "sum")]), Some(0.1 + 0.2));
    assert!(text.contains("c_total 18446744073709551615\n"));
}

#[test]
fn empty_batch_renders_nothing() {
    let text = prometheus::render(&Batch::new(vec![], vec![]));
    assert_eq!(text, "");
    assert_eq!(prometheus::parse(&text).unwrap(), vec![]);
}

const GOOD_HISTOGRAM: &str = "\
# TYPE h histogram
h_bucket{le=\"1\"} 1
h_bucket{le=\"2\"} 3
h_bucket{le=\"+Inf\"} 4
h_sum 5.5
h_count 4
";

fn rejects(text: &str, line: usize, reason: &str) {
    match prometheus::parse(text) {
        Ok(f) => panic!("accepted:\n{text}\nas {f:?}"),
        Err(ParseError { line: l, reason: r }) => {
            assert!(r.contains(reason), "reason `{r}` lacks `{reason}` for:\n{text}");
            assert_eq!(l, line, "line of `{r}` in:\n{text}");
        }
    }
}

#[test]
fn parser_accepts_the_format_variants_it_should() {
    assert_eq!(prometheus::parse(GOOD_HISTOGRAM).unwrap()[0].samples.len(), 5);
    let text = "# a comment\n\n#HELP x Help with \\\\ and \\n.\n# TYPE x  gauge \nx{ a = \"1\" , b=\"\u{e9}\",} 1.5e3 -12\nx\t2\n";
    let f = prometheus::parse(text).unwrap();
    assert_eq!(f[0].help.as_deref(), Some("Help with \\ and \n."));
    assert_eq!(f[0].value("x", &[("a", "1"), ("b", "\u{e9}")]), Some(1500.0));
    assert_eq!(f[0].samples[0].timestamp_ms, Some(-12));
    assert_eq!(f[0].value("x", &[]), Some(2.0));
    // A counter h_count declared earlier does not capture histogram h's samples (a series
    // of the same name and labels in both would be a duplicate, hence the label).
    let text = format!("# TYPE h_count counter\nh_count{{c=\"1\"}} 1\n{GOOD_HISTOGRAM}");
    let f = prometheus::parse(&text).unwrap();
    assert_eq!(f[1].samples.len(), 5);
}

#[test]
fn parser_rejects_each_malformed_kind() {
    // Malformed lines.
    rejects("# TYPE x gauge\nx\n", 2, "bad value");
    rejects("# TYPE x gauge\nx 1 2 3\n", 2, "trailing text");
    rejects("# TYPE x gauge\nx one\n", 2, "bad value `one`");
    rejects("# TYPE x gauge\nx inf\n", 2, "bad value");
    rejects("# TYPE x gauge\nx 1 1.5\n", 2, "bad timestamp");
    rejects("# TYPE x gauge\nx 1\r\n", 2, "bad value");
    rejects("# TYPE x gauge\n{a=\"b\"} 1\n", 2, "neither a comment nor a sample");
    rejects("# TYPE x gauge\nx{a=\"b\"}1\n", 2, "expected a blank");
    rejects("# TYPE x gauge\nx{a=\"b\" 1\n", 2, "expected `,` or `}`");
    rejects("# TYPE x gauge\nx{a=b} 1\n", 2, "not quoted");
    rejects("# TYPE x gauge\nx{a} 1\n", 2, "without `=`");
    rejects("# TYPE x gauge\nx{1a=\"b\"} 1\n", 2, "bad label name");
    rejects("# TYPE x gauge\nx{a=\"b\",a=\"c\"} 1\n", 2, "given twice");
    rejects("# TYPE x gauge\nx{a=\"b\\t\"} 1\n", 2, "bad escape");
    rejects("# TYPE x gauge\nx{a=\"b} 1\n", 2, "unterminated");
    rejects("# TYPE x gaug\n", 1, "unknown type");
    rejects("# TYPE x\n", 1, "unknown type");
    rejects("# TYPE\n", 1, "without a metric name");
    rejects("# TYPE 1x gauge\n", 1, "invalid metric name");
    rejects("# HELP x bad \\t escape\n", 1, "bad escape");
    rejects("# HELP x a\n# HELP x b\n", 2, "second HELP");
    rejects("# TYPE x gauge\n# TYPE x counter\n", 2, "second TYPE");
    rejects("# TYPE x gauge\nx 1\n# HELP x late\n", 3, "after its samples");
    // Unescaped quotes in a label value.
    rejects("# TYPE x gauge\nx{a=\"b\"c\"} 1\n", 2, "expected `,` or `}`");
    // Duplicate series, also with labels in another order and le spelled differently.
    rejects("# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n", 3, "duplicate series");
    rejects("# TYPE x gauge\nx{a=\"1\",b=\"2\"} 1\nx{b=\"2\",a=\"1\"} 2\n", 3, "duplicate series");
    rejects(
        "# TYPE h histogram\nh_bucket{le=\"0.000001\"} 1\nh_bucket{le=\"1e-6\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
        3,
        "duplicate series",
    );
    // Samples without a TYPE, or away from their family.
    rejects("x 1\n", 1, "no TYPE line");
    rejects("# HELP x only help\nx 1\n", 2, "no TYPE line");
    rejects("h_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n", 1, "no TYPE line");
    rejects("# TYPE x gauge\n# TYPE y gauge\nx 1\n", 3, "separated");
    rejects("# TYPE x gauge\nx{a=\"1\"} 1\n# TYPE y gauge\ny 1\nx{a=\"2\"} 1\n", 5, "separated");
    rejects("# TYPE c_total counter\nc_total -1\n", 2, "negative");
    // Histogram structure.
    rejects("# TYPE h histogram\nh 1\n", 2, "not a _bucket, _sum or _count");
    rejects(&GOOD_HISTOGRAM.replace("h_bucket{le=\"2\"} 3", "h_bucket{le=\"2\"} 0"), 3, "not cumulative");
    rejects(&GOOD_HISTOGRAM.replace("le=\"2\"", "le=\"0.5\""), 3, "bounds must increase");
    rejects(&GOOD_HISTOGRAM.replace("h_bucket{le=\"+Inf\"} 4\n", ""), 3, "no le=\"+Inf\" bucket");
    rejects(&GOOD_HISTOGRAM.replace("h_bucket{le=\"+Inf\"} 4", "h_bucket{le=\"+Inf\"} 5"), 6, "!= _count");
    rejects(&GOOD_HISTOGRAM.replace("h_count 4\n", ""), 5, "no _count");
    rejects(&GOOD_HISTOGRAM.replace("h_sum 5.5\n", ""), 5, "no _sum");
    rejects(&GOOD_HISTOGRAM.replace("h_bucket{le=\"1\"}", "h_bucket"), 2, "`le` belongs on _bucket");
    rejects(&GOOD_HISTOGRAM.replace("h_sum", "h_sum{le=\"1\"}"), 5, "`le` belongs on _bucket");
    rejects(&GOOD_HISTOGRAM.replace("le=\"1\"", "le=\"one\""), 2, "`le` is not a number");
    rejects(&GOOD_HISTOGRAM.replace("h_count 4", "h_count -4"), 6, "non-negative");
    rejects("# TYPE h histogram\nh_sum 0\nh_count 0\n", 3, "no buckets");
    // A second label set is checked on its own.
    let two = format!("{GOOD_HISTOGRAM}h_bucket{{a=\"x\",le=\"+Inf\"}} 2\nh_sum{{a=\"x\"}} 1\nh_count{{a=\"x\"}} 3\n");
    rejects(&two, 9, "+Inf bucket 2 != _count 3");
}

#[test]
fn recorder_feeds_the_exposition_across_threads() {
    let recorder = MemoryRecorder::new(3);
    let (tx, rx) = mpsc::channel::<u64>();
    // What a collector does: own a boxed recorder on its thread and push every interval.
    let mut boxed: Box<dyn FlightRecorder> = Box::new(recorder.clone());
    let collector = std::thread::spawn(move || {
        for n in rx {
            let mut b = sample_batch();
            b.timestamp = SystemTime::now();
            b.metrics.push(Metric::counter("ktm_test_pushes_total", "Pushes.", n));
            boxed.record(b);
        }
    });
    assert!(!recorder.wait_for(1, Duration::from_millis(50)), "nothing pushed yet");
    for n in 1..=5u64 {
        tx.send(n).unwrap();
        let start = Instant::now();
        assert!(recorder.wait_for(n, Duration::from_secs(30)), "push {n} not seen");
        assert!(start.elapsed() < Duration::from_secs(10));
        let latest = recorder.latest().unwrap();
        let fams = prometheus::parse(&prometheus::render(&latest)).unwrap();
        assert_eq!(family(&fams, "ktm_test_pushes_total").value("ktm_test_pushes_total", &[]), Some(n as f64));
    }
    drop(tx);
    collector.join().unwrap();
    let pushes: Vec<u64> = recorder
        .history()
        .iter()
        .map(|b| match b.get("ktm_test_pushes_total", &[]).map(|m| &m.value) {
            Some(MetricValue::Counter(v)) => *v,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(pushes, [3, 4, 5], "bounded history keeps the newest");
    assert_eq!((recorder.len(), recorder.total()), (3, 5));
}

#[test]
fn closure_recorder_can_export_text() {
    let mut texts = Vec::new();
    {
        let mut r = FnRecorder::new(|b: Batch| texts.push(prometheus::render(&b)));
        r.record(sample_batch());
    }
    assert_eq!(texts.len(), 1);
    assert!(prometheus::parse(&texts[0]).is_ok());
}

#[test]
fn invalid_series_are_left_out_not_rendered_broken() {
    let bad_hist = Histogram {
        buckets: vec![
            Bucket { upper_bound: 1.0, cumulative_count: 5 },
            Bucket { upper_bound: 2.0, cumulative_count: 3 },
        ],
        sum: 1.0,
        count: 5,
    };
    let batch = Batch::new(
        vec![
            Metric::counter("ok_total", "ok", 1),
            Metric::counter("bad name", "x", 1),
            Metric::counter("ok_total", "ok", 2).with_label("bad-label", "x"),
            Metric::counter("ok_total", "ok", 2).with_label("__reserved", "x"),
            Metric::counter("ok_total", "ok", 2).with_label("a", "x").with_label("a", "y"),
            Metric::gauge("ok_total", "a gauge in a counter family", 2.0).with_label("t", "gauge"),
            Metric::histogram("bad_hist", "x", bad_hist),
            Metric::histogram("le_hist", "x", Histogram::from_log2_ns(&[1, 1], 0)).with_label("le", "1"),
            Metric::histogram("h", "x", Histogram::from_log2_ns(&[1, 1], 0)),
            Metric::gauge("h_count", "collides with h's _count", 1.0),
        ],
        vec![],
    );
    let text = prometheus::render(&batch);
    let fams = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["ok_total", "h"]);
    assert_eq!(fams[0].samples.len(), 1);
}
