package ktm_test

import (
	"context"
	"log"
	"time"

	"banyandb.local/ktm"
)

// FlightRecorder stands for the agent's Flight Recorder.
type FlightRecorder struct{}

// Update takes one interval's series.
func (*FlightRecorder) Update(metrics []ktm.RawMetric) {}

// The agent's bridge loop: KTM built from the config and a logger, started, and its
// metrics pushed to the Flight Recorder every interval until the context ends.
// (Compiled by go test; not run, since it loops until cancelled.)
func Example_bridge() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	k, err := ktm.NewKTM(ktm.DefaultConfig(), log.Default())
	if err != nil {
		log.Fatal(err) // a bad config: the error names the key
	}
	if err := k.Start(ctx); err != nil {
		log.Printf("KTM degraded: %v", err) // e.g. no CAP_BPF: the state gauge says why
	}
	defer k.Stop()

	fr := &FlightRecorder{}
	ticker := time.NewTicker(k.Interval())
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			fr.Update(k.GetMetrics())
		}
	}
}
