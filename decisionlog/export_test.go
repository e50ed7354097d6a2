package decisionlog

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
