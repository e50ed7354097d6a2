// Command http-receiver is an upstream for agentpdp's http sink, to try
// shipping with: it accepts JSONL batches (gzip or not) at POST /ingest,
// keeps each row once by (origin, seq), appends new rows to a file, and
// reports at GET /stats how many rows it holds, how many duplicates it
// dropped, and any gap in each origin's seqs. It rebuilds what it holds from
// its file at start, so it can be stopped and restarted.
//
//	go run ./examples/http-receiver -addr 127.0.0.1:8080 -out ./var/received.jsonl
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
)

type receiver struct {
	mu         sync.Mutex
	out        *os.File
	seen       map[string]map[int64]bool // origin → seqs held
	duplicates int
}

type row struct {
	Origin string `json:"origin"`
	Seq    int64  `json:"seq"`
}

func (rc *receiver) load(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var r row
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			rc.hold(r)
		}
	}
	return sc.Err()
}

func (rc *receiver) hold(r row) bool {
	if rc.seen[r.Origin] == nil {
		rc.seen[r.Origin] = map[int64]bool{}
	}
	if rc.seen[r.Origin][r.Seq] {
		return false
	}
	rc.seen[r.Origin][r.Seq] = true
	return true
}

func (rc *receiver) ingest(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for sc.Scan() {
		var rw row
		if err := json.Unmarshal(sc.Bytes(), &rw); err != nil || rw.Origin == "" || rw.Seq <= 0 {
			http.Error(w, "a line is not a row with origin and seq", http.StatusBadRequest)
			return
		}
		if !rc.hold(rw) {
			rc.duplicates++
			continue
		}
		if _, err := rc.out.Write(append(sc.Bytes(), '\n')); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError) // 5xx: the sink retries
			return
		}
	}
	if err := sc.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := rc.out.Sync(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent) // acknowledged
}

func (rc *receiver) stats(w http.ResponseWriter, _ *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	type origin struct {
		Rows    int     `json:"rows"`
		LastSeq int64   `json:"last_seq"`
		Missing []int64 `json:"missing_seqs"` // gaps below last_seq (at most 100 listed)
	}
	out := map[string]any{"duplicates_dropped": rc.duplicates}
	origins := map[string]origin{}
	for name, seqs := range rc.seen {
		var o origin
		var all []int64
		for s := range seqs {
			all = append(all, s)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		o.Rows = len(all)
		if len(all) > 0 {
			o.LastSeq = all[len(all)-1]
			// A log may start after seq 1 once pruned: gaps count from the first held.
			for s := all[0]; s < o.LastSeq && len(o.Missing) < 100; s++ {
				if !seqs[s] {
					o.Missing = append(o.Missing, s)
				}
			}
		}
		o.Missing = append([]int64{}, o.Missing...)
		origins[name] = o
	}
	out["origins"] = origins
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	path := flag.String("out", "./var/received.jsonl", "file the rows are appended to")
	flag.Parse()
	rc := &receiver{seen: map[string]map[int64]bool{}}
	if err := rc.load(*path); err != nil {
		fmt.Fprintln(os.Stderr, "http-receiver:", err)
		os.Exit(1)
	}
	f, err := os.OpenFile(*path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "http-receiver:", err)
		os.Exit(1)
	}
	rc.out = f
	http.HandleFunc("POST /ingest", rc.ingest)
	http.HandleFunc("GET /stats", rc.stats)
	slog.Info("receiving", "addr", *addr, "out", *path)
	if err := http.ListenAndServe(*addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "http-receiver:", err)
		os.Exit(1)
	}
}
