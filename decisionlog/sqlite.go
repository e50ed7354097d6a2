package decisionlog

/*
// SQLite's own, linked in by github.com/mattn/go-sqlite3 (its amalgamation,
// or the system library with the libsqlite3 tag).
int sqlite3_config(int, ...);
int sqlite3_status64(int, long long*, long long*, int);

// SQLITE_CONFIG_MEMSTATUS is 9, SQLITE_CONFIG_LOOKASIDE 13 and
// SQLITE_STATUS_MEMORY_USED 0: all part of SQLite's stable interface.
static int agentpdp_memstatus_off(void) { return sqlite3_config(9, 0); }
static int agentpdp_lookaside(int size, int count) { return sqlite3_config(13, size, count); }
static long long agentpdp_memory_used(void) {
	long long cur = 0, hi = 0;
	sqlite3_status64(0, &cur, &hi, 0);
	return cur;
}
*/
import "C"

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// SQLite counts every allocation it makes in global statistics
// (sqlite3_status) unless told not to, and takes a process-wide mutex to do
// it on every malloc and free, a dozen or more times per row written: with
// it the writer spent 8% more CPU per row (BenchmarkAppendGroup, commits
// of 16 and 64 rows, 7-9%). SQLite's documentation recommends turning the
// statistics off (SQLITE_DEFAULT_MEMSTATUS=0 among its recommended compile
// options); go-sqlite3 compiles with them on, so the package turns them
// off at run time. That is only possible before SQLite initialises, which
// it does on the first connection, so it is done at init, before any
// connection can exist. Nothing in agentpdp reads SQLite's memory
// statistics or sets its heap limits, which depend on them.
//
// Each connection also gets a larger lookaside (SQLite's per-connection
// allocator for short-lived objects, 1,200-byte slots by default): 64
// slots of 4 KiB, 256 KiB a connection, so that the row-sized values an
// INSERT copies (the bound body, its parsed JSON, the record: 1.5 to 2 KB
// each) come from it rather than from malloc. 14 alternating runs: 7-10%
// less CPU per row.
func init() {
	// SQLITE_MISUSE if SQLite was already initialised: then the defaults
	// stay.
	sqliteConfig.memstatus = int(C.agentpdp_memstatus_off())
	sqliteConfig.lookaside = int(C.agentpdp_lookaside(lookasideSlot, lookasideSlots))
}

// The lookaside every connection gets: lookasideSlots slots of
// lookasideSlot bytes.
const lookasideSlot, lookasideSlots = 4096, 64

// sqliteConfig holds what SQLite answered to the configuration at init
// (SQLITE_OK is 0), for the tests.
var sqliteConfig struct{ memstatus, lookaside int }

// sqliteMemoryUsed is SQLite's count of the bytes it has allocated: 0
// while the statistics are off.
func sqliteMemoryUsed() int64 { return int64(C.agentpdp_memory_used()) }

// dsn builds a go-sqlite3 URI filename. Characters that URIs give a meaning
// are escaped so that any path works.
func dsn(path, params string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(path) + "?" + params
}

// connector opens connections to one database and runs hook on each:
// ATTACH and some PRAGMAs hold per connection, and database/sql opens
// connections whenever it needs them.
type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func openDB(dsn string, hook func(*sqlite3.SQLiteConn) error) *sql.DB {
	return sql.OpenDB(&connector{drv: &sqlite3.SQLiteDriver{ConnectHook: hook}, dsn: dsn})
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.drv }
