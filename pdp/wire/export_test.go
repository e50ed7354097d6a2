package wire

// For the tests of the fast encoder: its output without the library's
// fallback, and the library's options it must match.
var (
	AppendRecord   = appendRecord
	AppendDecision = appendDecision
	WriteOptions   = writeOptions
)
