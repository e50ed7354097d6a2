package decisionlog

// KeyHash is keyHash, for the tests outside the package.
var KeyHash = keyHash

// PruneAnchor is pruneAnchor, for the tests outside the package.
var PruneAnchor = pruneAnchor

// SQLiteMemoryUsed is sqliteMemoryUsed, for the tests outside the package.
var SQLiteMemoryUsed = sqliteMemoryUsed
