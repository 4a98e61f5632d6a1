package ktm_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"banyandb.local/ktm"
)

// started is a KTM scoped by a comm prefix no other process has, started, stopped at
// cleanup.
func started(t *testing.T, tag string) (*ktm.KTM, string) {
	t.Helper()
	prefix := fmt.Sprintf("kg%s%d", tag, os.Getpid()%100000)
	cfg := ktm.DefaultConfig()
	cfg.Interval = time.Second
	cfg.EBPF.CommPrefix = prefix
	k, err := ktm.NewKTM(cfg, tlog{t})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k, prefix
}

// untilScope collects until the iomonitor's scope names the cgroup, and returns its state.
func untilScope(t *testing.T, k *ktm.KTM, cgroup string) ktm.ModuleStatus {
	t.Helper()
	var last ktm.ModuleStatus
	for i := 0; i < 100; i++ {
		b, err := k.CollectBatch("")
		if err != nil {
			t.Fatal(err)
		}
		last = b.Modules[0]
		if strings.Contains(last.Scope, cgroup) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the scope never became cgroup %s: %+v", cgroup, last)
	return last
}

// checkHistograms checks every histogram's series: _count equals the +Inf bucket, buckets
// are cumulative in increasing le, and _sum is there.
func checkHistograms(t *testing.T, ms []ktm.RawMetric) int {
	t.Helper()
	type le struct {
		bound float64
		count float64
	}
	buckets := map[string][]le{}
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, m := range ms {
		if m.Type != "histogram" {
			continue
		}
		switch {
		case strings.HasSuffix(m.Name, "_bucket"):
			var bound float64
			for _, l := range m.Labels {
				if l.Name == "le" {
					b, err := strconv.ParseFloat(l.Value, 64)
					if err != nil {
						t.Fatalf("%s: le %q: %v", m.Name, l.Value, err)
					}
					bound = b
				}
			}
			name := strings.TrimSuffix(m.Name, "_bucket")
			buckets[name] = append(buckets[name], le{bound, m.Value})
		case strings.HasSuffix(m.Name, "_sum"):
			sums[strings.TrimSuffix(m.Name, "_sum")] = m.Value
		case strings.HasSuffix(m.Name, "_count"):
			counts[strings.TrimSuffix(m.Name, "_count")] = m.Value
		default:
			t.Fatalf("histogram series %s is not _bucket, _sum or _count", m.Name)
		}
	}
	for name, bs := range buckets {
		if !sort.SliceIsSorted(bs, func(i, j int) bool { return bs[i].bound < bs[j].bound }) {
			t.Errorf("%s: buckets not in increasing le", name)
		}
		for i := 1; i < len(bs); i++ {
			if bs[i].count < bs[i-1].count {
				t.Errorf("%s: bucket le=%v has %v after %v", name, bs[i].bound, bs[i].count, bs[i-1].count)
			}
		}
		inf := bs[len(bs)-1]
		if !math.IsInf(inf.bound, 1) {
			t.Errorf("%s: last bucket is le=%v, not +Inf", name, inf.bound)
		}
		c, ok := counts[name]
		if !ok || c != inf.count {
			t.Errorf("%s: _count %v (present %v) != +Inf bucket %v", name, c, ok, inf.count)
		}
		if _, ok := sums[name]; !ok {
			t.Errorf("%s: no _sum", name)
		}
	}
	return len(buckets)
}

func lbl(name, value string) ktm.Label { return ktm.Label{Name: name, Value: value} }

func typeOf(t *testing.T, ms []ktm.RawMetric, name string) string {
	t.Helper()
	for _, m := range ms {
		if m.Name == name {
			return m.Type
		}
	}
	t.Fatalf("no %s", name)
	return ""
}

func TestExactCountsFromATargetBesideADecoy(t *testing.T) {
	privileged(t)
	k, prefix := started(t, "x")
	file := scratchFile(t, 4096)
	cg := newCgroup(t, "target")
	decoyCg := newCgroup(t, "decoy")
	target := spawn(t, prefix, cg)
	decoy := spawn(t, "decoy", decoyCg)
	st := untilScope(t, k, cg)
	if st.State != "active" && !(st.State == "degraded" && strings.Contains(st.Reason, "unavailable on this kernel")) {
		t.Fatalf("iomonitor not running: %+v", st)
	}

	before := k.GetMetrics()
	target.run(t, "pread "+file+" 100 4096")
	target.run(t, "read "+file+" 60 4096")
	pread, read := catalogued(t, "SYS_PREAD_LATENCY").Name, catalogued(t, "SYS_READ_LATENCY").Name
	calls, success := catalogued(t, "FADVISE_CALLS").Name, catalogued(t, "FADVISE_SUCCESS").Name
	advice := catalogued(t, "FADVISE_ADVICE")
	advices := advice.LabelValues("advice")
	if len(advices) != 7 || advices[6] != "other" {
		t.Fatalf("advice values %v: want the kernel's six, then other", advices)
	}
	for _, a := range advices[:6] {
		target.run(t, "fadvise "+file+" "+a+" 2")
	}
	target.run(t, "fadvise - normal 1") // EBADF: a call, not a success
	decoy.run(t, "pread "+file+" 40 4096")
	decoy.run(t, "read "+file+" 40 4096")
	decoy.run(t, "fadvise "+file+" random 5")
	after := k.GetMetrics()

	delta := func(name string, labels ...ktm.Label) float64 {
		return mustValue(t, after, name, labels...) - mustValue(t, before, name, labels...)
	}
	want := []struct {
		name  string
		label []ktm.Label
		n     float64
	}{
		{pread + "_count", nil, 100},
		{pread + "_bucket", []ktm.Label{lbl("le", "+Inf")}, 100},
		{read + "_count", nil, 60},
		{calls, nil, 13},
		{success, nil, 12},
		{advice.Name, []ktm.Label{lbl("advice", advices[0])}, 3}, // normal, and the EBADF call
		{advice.Name, []ktm.Label{lbl("advice", advices[1])}, 2},
		{advice.Name, []ktm.Label{lbl("advice", advices[4])}, 2},
		{advice.Name, []ktm.Label{lbl("advice", advices[5])}, 2},
	}
	for _, w := range want {
		if got := delta(w.name, w.label...); got != w.n {
			t.Errorf("%s%v: +%v, want +%v (the decoy's I/O must not count)", w.name, w.label, got, w.n)
		}
	}
	if s := delta(pread + "_sum"); !(s > 0) {
		t.Errorf("pread _sum grew by %v", s)
	}
	if n := checkHistograms(t, after); n != 2 {
		t.Errorf("%d histograms, want read and pread", n)
	}
	for name, typ := range map[string]string{
		calls:                "counter",
		pread + "_count":     "histogram",
		read + "_bucket":     "histogram",
		ktm.ModuleStateName:  "gauge",
		ktm.MetricSourceName: "gauge",
	} {
		if got := typeOf(t, after, name); got != typ {
			t.Errorf("%s has type %q, want %q", name, got, typ)
		}
	}
	for _, m := range after {
		if m.Desc == "" {
			t.Errorf("%s has no Desc", m.Name)
		}
	}
	if k.IsDegraded() != (st.State == "degraded") {
		t.Errorf("IsDegraded %v with state %s", k.IsDegraded(), st.State)
	}
	// The same counters as Prometheus text in a node-exporter textfile (the target is idle).
	textfile := filepath.Join(t.TempDir(), "ktm.prom")
	if err := k.WriteTextfile(textfile); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	if line := fmt.Sprintf("\n%s %v\n", want[0].name, mustValue(t, after, want[0].name)); !strings.Contains(string(text), line) {
		t.Errorf("the textfile lacks %q:\n%s", line, text)
	}
}

// WriteTextfile of a KTM not started: the state gauge alone, disabled with the reason; after
// Close, an error and no file.
func TestWriteTextfileWithoutStart(t *testing.T) {
	k, err := ktm.NewKTM(ktm.DefaultConfig(), tlog{t})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ktm.prom")
	if err := k.WriteTextfile(path); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, l := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(l, ktm.ModuleStateName+"{") {
			states = append(states, l)
		}
	}
	if len(states) != 1 || !strings.Contains(states[0], `state="disabled"`) || !strings.Contains(states[0], `reason="not started"`) || !strings.HasSuffix(states[0], "} 1") {
		t.Errorf("state lines %q in:\n%s", states, text)
	}
	if err := k.WriteTextfile(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory as the textfile: %v", err)
	}
	_ = k.Close()
	if err := k.WriteTextfile(filepath.Join(dir, "after.prom")); err == nil {
		t.Error("WriteTextfile after Close succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "after.prom")); !os.IsNotExist(err) {
		t.Errorf("a file after Close: %v", err)
	}
}

func TestStopDetachesEveryProgramAndModulesRestart(t *testing.T) {
	privileged(t)
	k, _ := started(t, "s")
	ids := progIDs(t)
	if len(ids) == 0 {
		t.Fatal("no BPF program fd in this process after Start")
	}
	mods := k.Modules()
	if len(mods) != 1 || mods[0].Name() != "iomonitor" {
		t.Fatalf("modules: %v", mods)
	}
	if _, err := mods[0].Collect(); err != nil {
		t.Fatalf("collect of a running module: %v", err)
	}
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := k.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	for id := range ids {
		if !progGone(id) {
			t.Errorf("program %d still exists after Stop", id)
		}
	}
	if left := progIDs(t); len(left) != 0 {
		t.Errorf("program fds left after Stop: %v", left)
	}
	ms, err := mods[0].Collect()
	if err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("collect of a stopped module: %v", err)
	}
	if v, ok := value(ms, ktm.ModuleStateName, lbl("module", "iomonitor"), lbl("state", "disabled"), lbl("reason", "stopped")); !ok || v != 1 {
		t.Errorf("no disabled state gauge after stop: %v", ms)
	}
	// What the README says GetMetrics and IsDegraded return after Stop: the state gauge
	// alone (disabled, reason stopped), and false (a stopped module is off, not degraded).
	after := k.GetMetrics()
	if len(after) != 1 || after[0].Name != ktm.ModuleStateName {
		t.Errorf("GetMetrics after Stop: %v", after)
	}
	if v, ok := value(after, ktm.ModuleStateName, lbl("module", "iomonitor"), lbl("state", "disabled"), lbl("reason", "stopped")); !ok || v != 1 {
		t.Errorf("GetMetrics after Stop has no disabled state gauge: %v", after)
	}
	if k.IsDegraded() {
		t.Error("IsDegraded after Stop")
	}
	// The module view starts and stops it again.
	if err := mods[0].Start(); err != nil {
		t.Fatal(err)
	}
	again := progIDs(t)
	if len(again) == 0 {
		t.Fatal("no program after the module's Start")
	}
	if err := mods[0].Stop(); err != nil {
		t.Fatal(err)
	}
	for id := range again {
		if !progGone(id) {
			t.Errorf("program %d still exists after the module's Stop", id)
		}
	}
	// And after Close: nothing, false, and Start does nothing.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if got := k.GetMetrics(); got != nil || k.IsDegraded() || k.Start(context.Background()) != nil {
		t.Errorf("after Close: GetMetrics %v, IsDegraded %v", got, k.IsDegraded())
	}
	if len(progIDs(t)) != 0 {
		t.Error("Start after Close loaded programs")
	}
}

func TestContextCancelStops(t *testing.T) {
	privileged(t)
	cfg := ktm.DefaultConfig()
	cfg.EBPF.CommPrefix = fmt.Sprintf("kgc%d", os.Getpid()%100000)
	k, err := ktm.NewKTM(cfg, tlog{t})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ids := progIDs(t)
	cancel()
	for id := range ids {
		if !progGone(id) {
			t.Errorf("program %d still exists after the context ended", id)
		}
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	for _, c := range []struct {
		yaml string
		key  string
	}{
		{"collector:\n  intervall: 10s\n", "collector.intervall"},
		{"collector:\n  interval: 10x\n", "collector.interval"},
		{"collector:\n  modules: [iomonitor, nope]\n", "collector.modules"},
	} {
		k, err := ktm.NewKTMFromYAML(c.yaml, tlog{t})
		if err == nil || k != nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%q: err %v, want one naming %s", c.yaml, err, c.key)
		}
	}
	cfg := ktm.DefaultConfig()
	cfg.EBPF.CommPrefix = strings.Repeat("x", 20)
	if _, err := ktm.NewKTM(cfg, nil); err == nil || !strings.Contains(err.Error(), "collector.ebpf.comm_prefix") {
		t.Errorf("long comm prefix: %v", err)
	}
	cfg = ktm.DefaultConfig()
	cfg.Interval = -time.Second
	if _, err := ktm.NewKTM(cfg, nil); err == nil || !strings.Contains(err.Error(), "collector.interval") {
		t.Errorf("negative interval: %v", err)
	}
	// A disabled KTM, as the agent's zero config: no handle, no metrics, no errors.
	k, err := ktm.NewKTM(ktm.Config{}, nil)
	if err != nil || k.Start(context.Background()) != nil || k.GetMetrics() != nil || k.IsDegraded() || k.Stop() != nil {
		t.Errorf("disabled KTM misbehaves: %v", err)
	}
}

func TestFormatValueMatchesTheRustRenderer(t *testing.T) {
	for v, want := range map[float64]string{
		2e-9: "2e-9", 5.12e-7: "5.12e-7", 1.024e-6: "1.024e-6", 1.6384e-5: "0.000016384",
		68.719476736: "68.719476736", 0: "0", 1e16: "1e16", math.Inf(1): "+Inf",
	} {
		if got := ktm.FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestUnprivileged runs TestUnprivilegedChild in a child process of this test binary
// with every capability dropped (root's uid kept, so the binary and its directory stay
// readable whatever the checkout's permissions): Start must fail with an error and leave
// a degraded KTM, and the Go process must not crash.
func TestUnprivileged(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("setpriv (util-linux) is needed under CI=true")
		}
		t.Skip("SKIP: no setpriv")
	}
	cmd := exec.Command(setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--",
		os.Args[0], "-test.run=^TestUnprivilegedChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "KTM_GO_TEST_CHILD=unprivileged")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnprivilegedChild") {
		t.Fatalf("child without capabilities: %v\n%s", err, out)
	}
}

func TestUnprivilegedChild(t *testing.T) {
	if os.Getenv("KTM_GO_TEST_CHILD") != "unprivileged" {
		t.Skip("runs as TestUnprivileged's child")
	}
	status, _ := os.ReadFile("/proc/self/status")
	if !strings.Contains(string(status), "CapEff:\t0000000000000000") {
		t.Fatalf("the child still has capabilities:\n%s", status)
	}
	cfg := ktm.DefaultConfig()
	cfg.EBPF.CommPrefix = "kgunpriv"
	k, err := ktm.NewKTM(cfg, tlog{t})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	err = k.Start(context.Background())
	if err == nil {
		t.Fatal("Start without capabilities succeeded")
	}
	t.Logf("Start: %v", err)
	if !k.IsDegraded() {
		t.Error("not degraded after a failed start")
	}
	ms := k.GetMetrics()
	found := false
	for _, m := range ms {
		if m.Name == ktm.ModuleStateName {
			for _, l := range m.Labels {
				found = found || (l.Name == "state" && l.Value == "disabled")
			}
		}
	}
	if !found {
		t.Errorf("no disabled state gauge: %v", ms)
	}
	if err := k.Stop(); err != nil {
		t.Error(err)
	}
	if err := k.Stop(); err != nil {
		t.Error(err)
	}
}

// TestConcurrentCollect collects from goroutines through both views while the target
// works and Stop races with them; go test -race watches the Go side.
func TestConcurrentCollect(t *testing.T) {
	privileged(t)
	k, prefix := started(t, "c")
	file := scratchFile(t, 4096)
	cg := newCgroup(t, "conc")
	target := spawn(t, prefix, cg)
	untilScope(t, k, cg)
	mod := k.Modules()[0]
	count := catalogued(t, "SYS_PREAD_LATENCY").Name + "_count"
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			last := -1.0
			for i := 0; i < 25; i++ {
				var ms []ktm.RawMetric
				if g%2 == 0 {
					ms = k.GetMetrics()
				} else {
					var err error
					if ms, err = mod.Collect(); err != nil {
						errs <- err
						return
					}
				}
				_ = k.IsDegraded()
				v, ok := value(ms, count)
				if !ok || v < last {
					errs <- fmt.Errorf("goroutine %d: pread count %v (present %v) after %v", g, v, ok, last)
					return
				}
				last = v
			}
		}(g)
	}
	for i := 0; i < 10; i++ {
		target.run(t, "pread "+file+" 10 4096")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var stops sync.WaitGroup
	for i := 0; i < 3; i++ {
		stops.Add(1)
		go func() {
			defer stops.Done()
			if err := k.Stop(); err != nil {
				t.Error(err)
			}
			_ = k.GetMetrics()
		}()
	}
	stops.Wait()
}

// TestCatalogueCrossesTheABI reads the library's metric catalogue: unique keys and names,
// a Prometheus type each, the status families this package renders among them, and the
// fadvise advice label with its closed values. Needs no privilege.
func TestCatalogueCrossesTheABI(t *testing.T) {
	defs := ktm.Catalogue()
	if len(defs) < 14 {
		t.Fatalf("%d catalogue entries, want at least the iomonitor's 14", len(defs))
	}
	keys, names := map[string]bool{}, map[string]bool{}
	for _, d := range defs {
		if keys[d.Key] || names[d.Name] {
			t.Errorf("%s (%s) twice", d.Key, d.Name)
		}
		keys[d.Key], names[d.Name] = true, true
		if !strings.HasPrefix(d.Name, "ktm_") || d.Help == "" || d.Unit == "" {
			t.Errorf("entry %+v", d)
		}
		if (d.Type == "counter") != strings.HasSuffix(d.Name, "_total") {
			t.Errorf("%s is a %s: counters and only counters end in _total", d.Name, d.Type)
		}
		if d.Type != "counter" && d.Type != "gauge" && d.Type != "histogram" {
			t.Errorf("%s has type %q", d.Name, d.Type)
		}
	}
	if ktm.ModuleStateName == "" || ktm.ModuleStateName != catalogued(t, "MODULE_STATE").Name {
		t.Errorf("ModuleStateName %q", ktm.ModuleStateName)
	}
	if ktm.MetricSourceName == "" || ktm.MetricSourceName != catalogued(t, "METRIC_SOURCE").Name {
		t.Errorf("MetricSourceName %q", ktm.MetricSourceName)
	}
	if got := catalogued(t, "FADVISE_ADVICE").LabelValues("advice"); strings.Join(got, ",") != "normal,random,sequential,willneed,dontneed,noreuse,other" {
		t.Errorf("advice values %v", got)
	}
	if got := catalogued(t, "BPF_PROGRAM_RUNS").Labels; len(got) != 3 || got[1].Name != "program" || got[1].Values != nil {
		t.Errorf("program labels %+v", got)
	}
	if _, ok := ktm.CatalogueEntry("NO_SUCH_ENTRY"); ok {
		t.Error("an unknown key was found")
	}
}
