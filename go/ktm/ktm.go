package ktm

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libktm.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include <stdlib.h>
#include "ktm.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Label is one label of a RawMetric, as in the agent.
type Label struct {
	Name  string
	Value string
}

// RawMetric is one series, as in the agent's Flight Recorder. Type is the Prometheus
// type of the family the series belongs to: "counter", "gauge" or "histogram" (the
// _bucket, _sum and _count series of a histogram all carry "histogram").
type RawMetric struct {
	Name   string
	Desc   string
	Type   string
	Labels []Label
	Value  float64
}

// Logger receives the library's log records. *log.Logger satisfies it; a zap logger does
// through zap.NewStdLog.
type Logger interface {
	Printf(format string, v ...any)
}

// Config is the KTM configuration, the fields of the design's YAML. The zero Config is
// disabled, as the agent's is; DefaultConfig is enabled.
type Config struct {
	// Enabled false gives a KTM that loads nothing and returns no metrics.
	Enabled bool
	// Interval is collector.interval (0: the default, 10s).
	Interval time.Duration
	// Modules is collector.modules (empty: the default, iomonitor).
	Modules []string
	// EBPF is collector.ebpf.
	EBPF EBPFConfig
}

// EBPFConfig is collector.ebpf: how the target process is found and scoped.
type EBPFConfig struct {
	// CgroupPath is the target's cgroup v2 ("": derived from the discovered process).
	CgroupPath string
	// CommPrefix is the target's comm prefix ("": the default, banyand).
	CommPrefix string
}

// DefaultConfig is an enabled KTM with the design's defaults.
func DefaultConfig() Config {
	return Config{Enabled: true, Interval: 10 * time.Second, Modules: []string{"iomonitor"}}
}

// YAML is the config as the library reads it; only the fields that are set appear.
func (c Config) YAML() string {
	var b strings.Builder
	b.WriteString("collector:\n")
	if c.Interval != 0 {
		fmt.Fprintf(&b, "  interval: %s\n", strconv.Quote(c.Interval.String()))
	}
	if len(c.Modules) > 0 {
		b.WriteString("  modules:\n")
		for _, m := range c.Modules {
			fmt.Fprintf(&b, "    - %s\n", strconv.Quote(m))
		}
	}
	if c.EBPF.CgroupPath != "" || c.EBPF.CommPrefix != "" {
		b.WriteString("  ebpf:\n")
		if c.EBPF.CgroupPath != "" {
			fmt.Fprintf(&b, "    cgroup_path: %s\n", strconv.Quote(c.EBPF.CgroupPath))
		}
		if c.EBPF.CommPrefix != "" {
			fmt.Fprintf(&b, "    comm_prefix: %s\n", strconv.Quote(c.EBPF.CommPrefix))
		}
	}
	return b.String()
}

// KTM is the Kernel Telemetry Module. All methods are safe for concurrent use.
type KTM struct {
	// mu guards h against being freed while a call uses it: calls hold it for reading,
	// Close for writing. The library serializes the calls themselves.
	mu       sync.RWMutex
	h        *C.ktm_t
	logger   Logger
	interval time.Duration
	// watch ends the goroutine that stops KTM when Start's context is done.
	watchMu sync.Mutex
	watch   chan struct{}
}

// NewKTM creates a KTM from cfg; nothing is loaded until Start. An invalid config is an
// error naming the key (e.g. collector.ebpf.comm_prefix). logger may be nil.
func NewKTM(cfg Config, logger Logger) (*KTM, error) {
	if !cfg.Enabled {
		return &KTM{logger: logger}, nil
	}
	return NewKTMFromYAML(cfg.YAML(), logger)
}

// NewKTMFromYAML creates a KTM from the design's YAML config text ("" for the defaults).
func NewKTMFromYAML(config string, logger Logger) (*KTM, error) {
	text := C.CString(config)
	defer C.free(unsafe.Pointer(text))
	var cerr *C.char
	h := C.ktm_new(text, &cerr)
	k := &KTM{logger: logger}
	k.drainLogs()
	if h == nil {
		return nil, fmt.Errorf("ktm config: %w", takeError(cerr))
	}
	k.h = h
	k.interval = time.Duration(C.ktm_interval_ns(h))
	runtime.SetFinalizer(k, (*KTM).Close)
	return k, nil
}

// takeError turns a library error string into a Go error and frees it.
func takeError(cerr *C.char) error {
	if cerr == nil {
		return errors.New("unknown error")
	}
	defer C.ktm_string_free(cerr)
	return errors.New(C.GoString(cerr))
}

var levels = [...]string{"", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"}

// drainLogs hands the library's queued log records to the logger.
func (k *KTM) drainLogs() {
	for {
		var level C.int
		msg := C.ktm_take_log(&level)
		if msg == nil {
			return
		}
		text := C.GoString(msg)
		C.ktm_string_free(msg)
		if k.logger != nil {
			name := "LOG"
			if int(level) > 0 && int(level) < len(levels) {
				name = levels[level]
			}
			k.logger.Printf("ktm %s: %s", name, text)
		}
	}
}

// call runs f on the live handle, or returns errClosed.
func (k *KTM) call(f func(h *C.ktm_t) error) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.h == nil {
		return errClosed
	}
	err := f(k.h)
	k.drainLogs()
	return err
}

var errClosed = errors.New("ktm: disabled or closed")

// cModule is the C argument for a module name ("" for all), freed by the caller.
func cModule(name string) *C.char {
	if name == "" {
		return nil
	}
	return C.CString(name)
}

func (k *KTM) start(module string) error {
	return k.call(func(h *C.ktm_t) error {
		name := cModule(module)
		defer C.free(unsafe.Pointer(name))
		var cerr *C.char
		if C.ktm_start(h, name, &cerr) != 0 {
			return takeError(cerr)
		}
		return nil
	})
}

func (k *KTM) stop(module string) error {
	return k.call(func(h *C.ktm_t) error {
		name := cModule(module)
		defer C.free(unsafe.Pointer(name))
		var cerr *C.char
		if C.ktm_stop(h, name, &cerr) != 0 {
			return takeError(cerr)
		}
		return nil
	})
}

// Start loads and attaches every module's programs. A module that cannot start (missing
// CAP_BPF, a kernel refusal) is disabled with the reason, the KTM is degraded, and the
// error says why; the other modules keep running. When ctx is done, KTM stops.
// A disabled KTM does nothing.
func (k *KTM) Start(ctx context.Context) error {
	if k.disabled() {
		if k.logger != nil {
			k.logger.Printf("ktm INFO: KTM is disabled")
		}
		return nil
	}
	err := k.start("")
	if ctx != nil && ctx.Done() != nil {
		k.watchMu.Lock()
		if k.watch == nil {
			done := make(chan struct{})
			k.watch = done
			go func() {
				select {
				case <-ctx.Done():
					_ = k.Stop()
				case <-done:
				}
			}()
		}
		k.watchMu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("ktm start: %w", err)
	}
	return nil
}

// Stop detaches every program. It is safe to call twice; Start may follow.
func (k *KTM) Stop() error {
	k.watchMu.Lock()
	if k.watch != nil {
		close(k.watch)
		k.watch = nil
	}
	k.watchMu.Unlock()
	if k.disabled() {
		return nil
	}
	if err := k.stop(""); err != nil {
		return fmt.Errorf("ktm stop: %w", err)
	}
	return nil
}

// Close stops KTM and frees the library's handle; every later call is a no-op or
// returns an error. The garbage collector closes an unreachable KTM too.
func (k *KTM) Close() error {
	err := k.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.h != nil {
		C.ktm_free(k.h)
		k.h = nil
		runtime.SetFinalizer(k, nil)
	}
	return err
}

func (k *KTM) disabled() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.h == nil
}

// IsDegraded reports whether a module failed to start or was last seen degraded (some
// metric unavailable on this kernel, a read failure) or disabled. After Stop or Close it is
// false: a stopped module is off, not degraded (GetMetrics then says so in its state gauge).
func (k *KTM) IsDegraded() bool {
	degraded := false
	_ = k.call(func(h *C.ktm_t) error {
		degraded = C.ktm_is_degraded(h) == 1
		return nil
	})
	return degraded
}

// Interval is collector.interval: how often the agent should call GetMetrics.
func (k *KTM) Interval() time.Duration {
	if k.interval == 0 {
		return 10 * time.Second
	}
	return k.interval
}

// GetMetrics collects now and returns every series, the modules' state gauges included;
// after Stop only the state gauges (state "disabled", reason "stopped"); nil for a disabled
// or closed KTM or when the collection failed (logged).
func (k *KTM) GetMetrics() []RawMetric {
	if k.disabled() {
		return nil
	}
	b, err := k.CollectBatch("")
	if err != nil {
		if k.logger != nil {
			k.logger.Printf("ktm ERROR: collection failed: %v", err)
		}
		return nil
	}
	return b.RawMetrics()
}

// WriteTextfile collects now and writes the batch to path as Prometheus text, the way
// `ktm run --output` does (a temporary file beside it, mode 0644, renamed over it),
// for node-exporter's textfile collector. After Stop the file holds only the state gauges.
func (k *KTM) WriteTextfile(path string) error {
	return k.call(func(h *C.ktm_t) error {
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		var cerr *C.char
		if C.ktm_write_textfile(h, nil, cpath, &cerr) != 0 {
			return takeError(cerr)
		}
		return nil
	})
}

// Module is one KTM module, as the agent's module interface.
type Module interface {
	Name() string
	Start() error
	Stop() error
	Collect() ([]RawMetric, error)
}

type module struct {
	k    *KTM
	name string
}

func (m *module) Name() string { return m.name }
func (m *module) Start() error { return m.k.start(m.name) }
func (m *module) Stop() error  { return m.k.stop(m.name) }

// Collect returns the module's series and state gauges; when the module is disabled, the
// error carries the reason (the state gauge is returned too).
func (m *module) Collect() ([]RawMetric, error) {
	b, err := m.k.CollectBatch(m.name)
	if err != nil {
		return nil, err
	}
	for _, s := range b.Modules {
		if s.State == "disabled" {
			return b.RawMetrics(), fmt.Errorf("ktm module %s is disabled: %s", s.Module, s.Reason)
		}
	}
	return b.RawMetrics(), nil
}

// Modules are the enabled modules (collector.modules), in config order.
func (k *KTM) Modules() []Module {
	var out []Module
	_ = k.call(func(h *C.ktm_t) error {
		n := int(C.ktm_module_count(h))
		for i := 0; i < n; i++ {
			out = append(out, &module{k: k, name: C.GoString(C.ktm_module_name(h, C.size_t(i)))})
		}
		return nil
	})
	return out
}
