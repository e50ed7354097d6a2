// Package decisionlog is agentpdp's append-only, hash-chained decision log in
// SQLite.
//
// Every decision, policy load and (later) outcome, approval and checkpoint is
// one [Entry] with a monotonically increasing seq. Entries are written by a
// single goroutine that owns the write connection and commits concurrent
// appends together (group commit): [Log.Append] returns only after the
// entries are durable, so a caller that answers after Append returns never
// answers with something the log does not hold.
//
// Each row's hash is SHA-256(previous row's hash || [Entry.CanonicalBytes]),
// computed inside the transaction that writes the row, so the chain has no
// gaps even across crashes: a transaction either commits rows with their
// hashes or leaves nothing.
//
// The body of an entry is JSON owned by whoever appends it, and the single
// source of truth that the hash covers. Queries filter on its fields by
// JSON path; the few that the log table's own indexes read (decision id,
// decision, parent, approval, shadow decision) are also stored in columns
// of their own, which the appender gives in [Keys] (so SQLite need not
// parse the body on insert) and [Reader.Verify] holds to the body.
package decisionlog
