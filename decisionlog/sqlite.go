package decisionlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"

	"github.com/mattn/go-sqlite3"
)

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
