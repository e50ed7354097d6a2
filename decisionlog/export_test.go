package decisionlog

import "context"

// KeyHash is keyHash, for the tests outside the package.
var KeyHash = keyHash

// PruneAnchor is pruneAnchor, for the tests outside the package.
var PruneAnchor = pruneAnchor

// SQLiteMemoryUsed is sqliteMemoryUsed, for the tests outside the package.
var SQLiteMemoryUsed = sqliteMemoryUsed

// SQLiteConfigResults are SQLite's answers to the package's configuration
// at init: memory statistics off, then the lookaside size.
func SQLiteConfigResults() (memstatus, lookaside int) {
	return sqliteConfig.memstatus, sqliteConfig.lookaside
}

// OpenAtSchema is Open with only the first n migrations applied: a log as
// an older agentpdp left it.
func OpenAtSchema(ctx context.Context, path string, opts Options, n int) (*Log, error) {
	opts.schema = n
	return Open(ctx, path, opts)
}

// Migrations is how many migrations the package has.
func Migrations() int { return len(migrations) }

// Migrate is migrate, for the tests outside the package.
var Migrate = migrate
