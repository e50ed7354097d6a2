// Package pdp is agentpdp's decision engine: it decides requests against a
// policy snapshot with agentpdp's semantics, records every decision before
// answering it, and keeps approvals.
//
// A [policy.Snapshot] is an immutable, validated set of policies, schema and
// static entities. An [Engine] serves one snapshot at a time:
// [Engine.Stage] loads and validates a new one, and its commit records the
// full text in the decision log and only then publishes it with an atomic
// swap, so a decision in flight finishes on the snapshot it started with and
// every logged decision's policy version can be explained from the log.
//
// [Engine.Decide] applies the built-in guards (expired credential, invalid
// approval), evaluates Cedar, maps the result to allow, deny or step_up (see
// docs/design.md: a satisfied forbid denies, an erroring forbid denies
// unless [wire.OnErrorSkip], @step_up forbids and permits ask for a human),
// and returns only after the decision's record is committed through its
// [Recorder]. A policy outcome is data in the [wire.Decision]; an error
// return means the decision could not be made or recorded, and nothing was
// answered.
//
// The reload component, pdp/reload, owns reloading: one goroutine takes
// debounced fsnotify events, SIGHUP and the admin API's reloads, and serves
// a tree only once it reads the same before and after its load. [PDP.Reload]
// is its public entry. The wire types are in pdp/wire, policy loading in
// pdp/policy, masking in pdp/mask and the HTTP server in pdp/server.
package pdp
