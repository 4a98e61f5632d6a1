package ktm

/*
#include "ktm.h"
*/
import "C"

import (
	"strings"
	"sync"
	"unsafe"
)

// MetricDef is one entry of the library's metric catalogue (ktm_catalogue): every metric
// the library exports, as the library's own table defines it. Hosts and tests read names
// from it instead of writing them again.
type MetricDef struct {
	// Key is the entry's constant in the Rust catalogue, e.g. SYS_PREAD_LATENCY.
	Key string
	// Name is the exported family name, e.g. ktm_sys_pread_latency_seconds.
	Name string
	// Help is the family's help text.
	Help string
	// Type is "counter", "gauge" or "histogram".
	Type string
	// Unit is what one unit of the value is: seconds, pages, calls...
	Unit string
	// Labels are the family's labels in the order they are shown.
	Labels []CatalogueLabel
}

// CatalogueLabel is a label of a catalogue entry; Values lists a closed label's values in
// the library's order and is empty for an open one (a program's name).
type CatalogueLabel struct {
	Name   string
	Values []string
}

var (
	catalogueOnce sync.Once
	catalogueDefs []MetricDef
)

// catalogue reads the library's table once (it is static there).
func catalogue() []MetricDef {
	catalogueOnce.Do(func() { catalogueDefs = readCatalogue() })
	return catalogueDefs
}

func readCatalogue() []MetricDef {
	var p *C.ktm_metric_def_t
	n := int(C.ktm_catalogue(&p))
	if n == 0 || p == nil {
		return nil
	}
	out := make([]MetricDef, 0, n)
	for _, d := range unsafe.Slice(p, n) {
		m := MetricDef{Key: str(d.key), Name: str(d.name), Help: str(d.help), Unit: str(d.unit)}
		switch d._type {
		case C.KTM_COUNTER:
			m.Type = "counter"
		case C.KTM_GAUGE:
			m.Type = "gauge"
		case C.KTM_HISTOGRAM:
			m.Type = "histogram"
		}
		if labels := str(d.labels); labels != "" {
			for _, l := range strings.Split(labels, ",") {
				name, values, closed := strings.Cut(l, ":")
				label := CatalogueLabel{Name: name}
				if closed {
					label.Values = strings.Split(values, "|")
				}
				m.Labels = append(m.Labels, label)
			}
		}
		out = append(out, m)
	}
	return out
}

// Catalogue returns every metric the library exports, in the library's order.
func Catalogue() []MetricDef {
	return append([]MetricDef(nil), catalogue()...)
}

// CatalogueEntry returns the entry whose Key is key.
func CatalogueEntry(key string) (MetricDef, bool) {
	for _, d := range catalogue() {
		if d.Key == key {
			return d, true
		}
	}
	return MetricDef{}, false
}

// LabelValues returns the values of the closed label name (nil for an open or unknown one).
func (d MetricDef) LabelValues(name string) []string {
	for _, l := range d.Labels {
		if l.Name == name {
			return l.Values
		}
	}
	return nil
}

// catalogued is the entry key, which the library always has (its Go tests check every key
// this package uses); the zero entry if a library of another version lacks it.
func catalogued(key string) MetricDef {
	d, _ := CatalogueEntry(key)
	return d
}
