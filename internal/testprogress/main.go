// Command testprogress shows go test -json as it runs: each package when it
// starts and when it ends (go test's own ok and FAIL lines), a line every
// 30 s naming what still runs, the output of what failed, and a closing
// "N passed, N failed". make test pipes the race suite through it, so a
// cold run is never silent for minutes.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// event is one line of go test -json (cmd/test2json), with the build
// events of Go 1.24.
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string
}

func main() {
	start := time.Now()
	var mu sync.Mutex
	running := map[string]time.Time{}
	output := map[string][]string{}
	passed, failed := 0, 0
	badPackages := 0

	go func() {
		for range time.Tick(30 * time.Second) {
			mu.Lock()
			var names []string
			for p := range running {
				names = append(names, p)
			}
			mu.Unlock()
			slices.Sort(names)
			if len(names) > 0 {
				fmt.Printf("... %.0fs: running %s\n", time.Since(start).Seconds(), strings.Join(names, ", "))
			} else {
				fmt.Printf("... %.0fs: building\n", time.Since(start).Seconds())
			}
		}
	}()

	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Println(sc.Text()) // not an event: go test's own message
			continue
		}
		mu.Lock()
		switch {
		case e.Action == "build-output":
			fmt.Print(e.Output)
		case e.Action == "build-fail":
			badPackages++
		case e.Test == "" && e.Action == "start":
			running[e.Package] = time.Now()
			fmt.Printf("run   %s\n", e.Package)
		case e.Action == "output":
			output[e.Package] = append(output[e.Package], e.Output)
		case e.Test != "" && e.Action == "pass":
			passed++
		case e.Test != "" && e.Action == "fail":
			failed++
		case e.Test == "" && (e.Action == "pass" || e.Action == "skip"):
			delete(running, e.Package)
			if e.Action == "pass" {
				fmt.Printf("ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, e.Package)
		case e.Test == "" && e.Action == "fail":
			delete(running, e.Package)
			badPackages++
			fmt.Print(strings.Join(output[e.Package], ""))
			fmt.Printf("FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			delete(output, e.Package)
		}
		mu.Unlock()
	}
	fmt.Printf("make test: %.0fs\n%d passed, %d failed\n", time.Since(start).Seconds(), passed, failed)
	if failed > 0 || badPackages > 0 || sc.Err() != nil {
		os.Exit(1)
	}
}
