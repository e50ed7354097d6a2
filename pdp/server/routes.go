package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// routeMux is a ServeMux that answers what it does not serve in the API's
// JSON, saying what to do instead: a known path asked with another method
// is 405 Method Not Allowed with an Allow header (RFC 9110, 15.5.6), and an
// unknown path is 404 naming the paths this socket serves. Served requests
// take the ServeMux's path alone; only a miss looks further.
type routeMux struct {
	*http.ServeMux
	socket  string              // how the 404 names this socket
	served  []string            // "POST /v1/authorize", … in the order registered
	methods map[string][]string // path pattern → its methods
	byPath  *http.ServeMux      // the path patterns alone, to tell a 405 from a 404
}

func newRouteMux(socket string) *routeMux {
	m := &routeMux{ServeMux: http.NewServeMux(), socket: socket, methods: map[string][]string{}, byPath: http.NewServeMux()}
	// The most general pattern: every request no route takes.
	m.ServeMux.HandleFunc("/", m.miss)
	return m
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// Handle registers pattern, which must be "METHOD /path".
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	method, path, _ := strings.Cut(pattern, " ")
	if _, ok := m.methods[path]; !ok {
		m.byPath.HandleFunc(path, func(http.ResponseWriter, *http.Request) {})
	}
	m.methods[path] = append(m.methods[path], method)
	if !strings.Contains(path, "/debug/") { // the profiler is for those who know it
		m.served = append(m.served, pattern)
	}
}

func (m *routeMux) miss(w http.ResponseWriter, r *http.Request) {
	if _, path := m.byPath.Handler(r); path != "" {
		allow := slices.Clone(m.methods[path])
		if slices.Contains(allow, http.MethodGet) {
			allow = append(allow, http.MethodHead) // as the ServeMux serves GET routes
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{
			"error": fmt.Sprintf("%s %s: method not allowed; this path takes %s", r.Method, r.URL.Path, strings.Join(allow, " or ")),
		})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{
		"error": fmt.Sprintf("%s %s is not served on %s; it serves %s", r.Method, r.URL.Path, m.socket, strings.Join(m.served, ", ")),
		"paths": m.served,
	})
}
