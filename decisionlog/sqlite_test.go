package decisionlog_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// SQLite's memory statistics are off in any process that links the
// package (they cost a global mutex per allocation): a log that wrote rows
// leaves SQLite's count of allocated bytes at zero, where with them on it
// would hold at least the page cache.
func TestSQLite_MemoryStatisticsOff(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "d.db"), decisionlog.Options{})
	for i := range 20 {
		if err := l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), "a", "allow")); err != nil {
			t.Fatal(err)
		}
	}
	if n := decisionlog.SQLiteMemoryUsed(); n != 0 {
		t.Errorf("SQLite counts %d bytes allocated: its memory statistics are on", n)
	}
}

// SQLite accepted the package's configuration: it was given before SQLite
// initialised, so it holds for every connection of the process.
func TestSQLite_ConfiguredBeforeInit(t *testing.T) {
	if ms, la := decisionlog.SQLiteConfigResults(); ms != 0 || la != 0 {
		t.Errorf("sqlite3_config answered %d (memory statistics off) and %d (lookaside), want 0 (SQLITE_OK)", ms, la)
	}
}
