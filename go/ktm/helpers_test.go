package ktm_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"banyandb.local/ktm"
)

// catalogued is the library's catalogue entry key (ktm_catalogue): the tests name metrics by
// it, never by writing an exported name again. A key the library lacks fails the test.
func catalogued(t *testing.T, key string) ktm.MetricDef {
	t.Helper()
	d, ok := ktm.CatalogueEntry(key)
	if !ok {
		t.Fatalf("the metric catalogue has no entry %s", key)
	}
	return d
}

// privileged says whether the test may use bpf(); otherwise it skips, or, under CI=true,
// fails: CI must never silently skip a privileged test.
func privileged(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not running as root"
	} else {
		// BPF_MAP_CREATE of a 1-entry array: what loading the programs needs first.
		attr := [5]uint32{2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1, 0}
		fd, _, errno := syscall.Syscall(sysBPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno != 0 {
			why = "bpf() unavailable: " + errno.Error()
		} else {
			syscall.Close(int(fd))
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("privileged test cannot run under CI=true: %s", why)
	}
	t.Skipf("SKIP: %s", why)
}

// repoRoot is the crate's checkout: go test runs in go/ktm.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// ktmBin is the crate's `ktm` binary, whose `workload` mode is the target child.
func ktmBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("KTM_BIN"); b != "" {
		return b
	}
	b := filepath.Join(repoRoot(t), "target/release/ktm")
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("%s: %v (run `cargo build --release` first)", b, err)
	}
	return b
}

type tlog struct{ t *testing.T }

func (l tlog) Printf(format string, v ...any) { l.t.Logf(format, v...) }

// cgroup2Mount finds the cgroup v2 mount in mountinfo (hybrid hosts have it at
// /sys/fs/cgroup/unified).
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if ok && strings.HasPrefix(post, "cgroup2 ") {
			return strings.Fields(pre)[4]
		}
	}
	t.Fatal("no cgroup v2 mount")
	return ""
}

// newCgroup makes a cgroup v2 directory for this test, removed at cleanup with its
// processes moved to the root first.
func newCgroup(t *testing.T, name string) string {
	t.Helper()
	root := cgroup2Mount(t)
	dir := filepath.Join(root, fmt.Sprintf("ktm-go-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(procs)) {
				_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(pid), 0o644)
			}
		}
		for i := 0; i < 50; i++ {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// workload is `ktm workload --comm NAME`: commands go over a socket on its fd 0 (it reads
// them with recv(2), so they add no read(2) of their own), replies come on its stdout.
type workload struct {
	cmd  *exec.Cmd
	sock *os.File
	out  *bufio.Reader
	mu   sync.Mutex
}

func spawn(t *testing.T, comm, cgroup string) *workload {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ktm-workload"), os.NewFile(uintptr(fds[1]), "ktm-workload-child")
	cmd := exec.Command(ktmBin(t), "workload", "--comm", comm)
	cmd.Stdin = theirs
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	w := &workload{cmd: cmd, sock: ours, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		ours.Close()
	})
	if cgroup != "" {
		// Before its first command: until then it only waits on the socket.
		if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.run(t, "ping")
	return w
}

// run sends one command and returns its reply's value.
func (w *workload) run(t *testing.T, command string) string {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.sock.Write([]byte(command + "\n")); err != nil {
		t.Fatalf("send %q: %v", command, err)
	}
	line, err := w.out.ReadString('\n')
	if err != nil {
		t.Fatalf("workload %q: %v", command, err)
	}
	line = strings.TrimRight(line, "\n")
	verdict, value, _ := strings.Cut(line, " ")
	if verdict != "ok" {
		t.Fatalf("workload %q: %s", command, line)
	}
	return value
}

// value is the series name{labels} exactly (labels in any order), and whether it exists.
func value(ms []ktm.RawMetric, name string, labels ...ktm.Label) (float64, bool) {
	for _, m := range ms {
		if m.Name != name || len(m.Labels) != len(labels) {
			continue
		}
		match := true
		for _, want := range labels {
			found := false
			for _, l := range m.Labels {
				found = found || l == want
			}
			match = match && found
		}
		if match {
			return m.Value, true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, ms []ktm.RawMetric, name string, labels ...ktm.Label) float64 {
	t.Helper()
	v, ok := value(ms, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v in %d series", name, labels, len(ms))
	}
	return v
}

// progIDs are the ids of the BPF programs this process holds an fd of (programs and
// links show `prog_id` in their fdinfo).
func progIDs(t *testing.T) map[uint32]bool {
	t.Helper()
	ids := map[uint32]bool{}
	entries, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "prog_id:") {
				if id, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "prog_id:")), 10, 32); err == nil {
					ids[uint32(id)] = true
				}
			}
		}
	}
	return ids
}

// progGone says whether the kernel has freed program id: BPF_PROG_GET_FD_BY_ID gives
// ENOENT (frees are RCU-deferred, so it waits a little).
func progGone(id uint32) bool {
	for i := 0; i < 200; i++ {
		attr := [3]uint32{id, 0, 0}
		fd, _, errno := syscall.Syscall(sysBPF, 13 /* BPF_PROG_GET_FD_BY_ID */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno == syscall.ENOENT {
			return true
		}
		if errno == 0 {
			syscall.Close(int(fd))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// scratchFile is a file of n bytes in a temporary directory.
func scratchFile(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
