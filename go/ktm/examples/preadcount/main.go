// preadcount: KTM started from Go, 100 preads of its own, the pread histogram's count.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"banyandb.local/ktm"
)

func main() {
	cfg := ktm.DefaultConfig()
	cfg.EBPF.CommPrefix = "preadcount" // this program's own comm: it is its own target
	k, err := ktm.NewKTM(cfg, log.Default())
	if err != nil {
		log.Fatal(err)
	}
	if err := k.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer k.Stop()
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := 0; i < 100; i++ {
		f.ReadAt(buf, 0) // pread64
	}
	pread, _ := ktm.CatalogueEntry("SYS_PREAD_LATENCY") // the library's name for the histogram
	for _, m := range k.GetMetrics() {
		if m.Name == pread.Name+"_count" {
			fmt.Println(m.Value)
		}
	}
}
