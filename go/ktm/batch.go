package ktm

/*
#include <stdlib.h>
#include "ktm.h"
*/
import "C"

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Batch is one collection, typed: what the library returns before it is flattened into
// RawMetrics.
type Batch struct {
	Timestamp time.Time
	Metrics   []Metric
	Modules   []ModuleStatus
}

// Metric is one typed series. Counter is set for "counter", Gauge for "gauge", Histogram
// for "histogram". A counter in seconds (ktm_bpf_program_run_time_seconds_total) has its
// whole part in Counter and its exact value in Gauge.
type Metric struct {
	Name      string
	Help      string
	Type      string
	Labels    []Label
	Counter   uint64
	Gauge     float64
	Histogram *Histogram
}

// Histogram is cumulative, in Prometheus' classic layout; the +Inf bucket is Count.
type Histogram struct {
	Buckets []Bucket
	Sum     float64
	Count   uint64
}

// Bucket holds the observations at or below UpperBound.
type Bucket struct {
	UpperBound      float64
	CumulativeCount uint64
}

// ModuleStatus is a module's state (active, degraded, disabled, waiting_for_target), why,
// what the filter selects, and which mechanism feeds each metric.
type ModuleStatus struct {
	Module  string
	State   string
	Reason  string
	Scope   string
	Sources []Source
}

// Source is the mechanism feeding a metric; Mechanism is "" when none could.
type Source struct {
	Metric    string
	Mechanism string
	Detail    string
}

// CollectBatch collects module now ("" for every module) and returns the typed batch.
func (k *KTM) CollectBatch(module string) (*Batch, error) {
	var out *Batch
	err := k.call(func(h *C.ktm_t) error {
		name := cModule(module)
		defer C.free(unsafe.Pointer(name))
		var cb *C.ktm_batch_t
		var cerr *C.char
		if C.ktm_collect(h, name, &cb, &cerr) != 0 {
			return takeError(cerr)
		}
		defer C.ktm_batch_free(cb)
		out = convert(cb)
		return nil
	})
	return out, err
}

func str(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// convert copies a C batch into Go memory (the C batch is freed right after).
func convert(cb *C.ktm_batch_t) *Batch {
	b := &Batch{Timestamp: time.Unix(0, int64(cb.timestamp_unix_ns))}
	if cb.n_metrics > 0 {
		for _, cm := range unsafe.Slice(cb.metrics, int(cb.n_metrics)) {
			m := Metric{Name: str(cm.name), Help: str(cm.help)}
			if cm.n_labels > 0 {
				for _, l := range unsafe.Slice(cm.labels, int(cm.n_labels)) {
					m.Labels = append(m.Labels, Label{Name: str(l.name), Value: str(l.value)})
				}
			}
			switch cm._type {
			case C.KTM_COUNTER:
				m.Type, m.Counter, m.Gauge = "counter", uint64(cm.counter), float64(cm.gauge)
			case C.KTM_GAUGE:
				m.Type, m.Gauge = "gauge", float64(cm.gauge)
			case C.KTM_HISTOGRAM:
				h := &Histogram{Sum: float64(cm.sum), Count: uint64(cm.count)}
				if cm.n_buckets > 0 {
					for _, cb := range unsafe.Slice(cm.buckets, int(cm.n_buckets)) {
						h.Buckets = append(h.Buckets, Bucket{float64(cb.upper_bound), uint64(cb.cumulative_count)})
					}
				}
				m.Type, m.Histogram = "histogram", h
			default:
				continue // a type this package does not know: left out rather than misread
			}
			b.Metrics = append(b.Metrics, m)
		}
	}
	if cb.n_modules > 0 {
		for _, cs := range unsafe.Slice(cb.modules, int(cb.n_modules)) {
			s := ModuleStatus{Module: str(cs.module), State: str(cs.state), Reason: str(cs.reason), Scope: str(cs.scope)}
			if cs.n_sources > 0 {
				for _, src := range unsafe.Slice(cs.sources, int(cs.n_sources)) {
					s.Sources = append(s.Sources, Source{str(src.metric), str(src.mechanism), str(src.detail)})
				}
			}
			b.Modules = append(b.Modules, s)
		}
	}
	return b
}

// Names and help of the status families, from the library's metric catalogue (the crate's
// Prometheus renderer reads the same entries).
var (
	ModuleStateName  = catalogued("MODULE_STATE").Name
	MetricSourceName = catalogued("METRIC_SOURCE").Name
	moduleStateHelp  = catalogued("MODULE_STATE").Help
	metricSourceHelp = catalogued("METRIC_SOURCE").Help
)

// RawMetrics flattens the batch into the agent's series: a counter or gauge is one
// series; a histogram is its _bucket series (with le, +Inf last), _sum and _count; each
// module's status is a ktm_module_state{module,state,reason,scope} gauge of 1 and one
// ktm_metric_source{module,metric,mechanism,detail} gauge of 1 per metric.
func (b *Batch) RawMetrics() []RawMetric {
	var out []RawMetric
	for _, m := range b.Metrics {
		switch m.Type {
		case "counter":
			v := float64(m.Counter)
			if m.Gauge != 0 { // a counter in seconds: the exact value
				v = m.Gauge
			}
			out = append(out, RawMetric{Name: m.Name, Desc: m.Help, Type: m.Type, Labels: m.Labels, Value: v})
		case "gauge":
			out = append(out, RawMetric{Name: m.Name, Desc: m.Help, Type: m.Type, Labels: m.Labels, Value: m.Gauge})
		case "histogram":
			h := m.Histogram
			bucket := func(le string, v uint64) {
				labels := append(append([]Label(nil), m.Labels...), Label{"le", le})
				out = append(out, RawMetric{Name: m.Name + "_bucket", Desc: m.Help, Type: m.Type, Labels: labels, Value: float64(v)})
			}
			for _, x := range h.Buckets {
				bucket(FormatValue(x.UpperBound), x.CumulativeCount)
			}
			bucket("+Inf", h.Count)
			out = append(out,
				RawMetric{Name: m.Name + "_sum", Desc: m.Help, Type: m.Type, Labels: m.Labels, Value: h.Sum},
				RawMetric{Name: m.Name + "_count", Desc: m.Help, Type: m.Type, Labels: m.Labels, Value: float64(h.Count)})
		}
	}
	for _, s := range b.Modules {
		labels := []Label{{"module", s.Module}, {"state", s.State}}
		if s.Reason != "" {
			labels = append(labels, Label{"reason", s.Reason})
		}
		if s.Scope != "" {
			labels = append(labels, Label{"scope", s.Scope})
		}
		out = append(out, RawMetric{Name: ModuleStateName, Desc: moduleStateHelp, Type: "gauge", Labels: labels, Value: 1})
	}
	for _, s := range b.Modules {
		for _, src := range s.Sources {
			mech := src.Mechanism
			if mech == "" {
				mech = "unavailable"
			}
			labels := []Label{{"module", s.Module}, {"metric", src.Metric}, {"mechanism", mech}, {"detail", src.Detail}}
			out = append(out, RawMetric{Name: MetricSourceName, Desc: metricSourceHelp, Type: "gauge", Labels: labels, Value: 1})
		}
	}
	return out
}

// FormatValue spells a float as the crate's Prometheus renderer does, so that an `le`
// label is the same string in the agent and in `ktm run`: shortest round-trip digits,
// exponent form (5.12e-7) below 1e-5 and from 1e16.
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == 0:
		return "0"
	case math.Abs(v) < 1e-5 || math.Abs(v) >= 1e16:
		s := strconv.FormatFloat(v, 'e', -1, 64) // 5.12e-07
		mant, exp, _ := strings.Cut(s, "e")
		sign := ""
		if strings.HasPrefix(exp, "-") {
			sign = "-"
		}
		exp = strings.TrimLeft(strings.TrimLeft(exp, "+-"), "0")
		return mant + "e" + sign + exp
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}
