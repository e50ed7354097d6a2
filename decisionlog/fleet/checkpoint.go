package fleet

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// checkpointError is a host checkpoint that does not hold: a bad
// signature, or one that signs something other than the rows the
// collector verified.
type checkpointError struct{ problem string }

func (e *checkpointError) Error() string { return e.problem }

// checkHostCheckpoint checks a checkpoint row at seq, which covers rows 1
// to seq-1 (decisionlog.Checkpoint), against what the collector computed
// from those rows: head, the chain hash of row seq-1, and root, the RFC
// 6962 root over their hashes. The note must be signed by the origin's key
// and state exactly that root. It returns the host's signed note, the
// checkpoint the witness cosigns.
func checkHostCheckpoint(body []byte, origin string, seq int64, pub ed25519.PublicKey, head, root []byte) ([]byte, error) {
	var c decisionlog.Checkpoint
	if err := json.Unmarshal(body, &c); err != nil || c.Note == "" {
		return nil, &checkpointError{"checkpoint: not a checkpoint row with a signed note"}
	}
	switch {
	case c.Origin != origin:
		return nil, &checkpointError{fmt.Sprintf("checkpoint is of log %s, not %s", c.Origin, origin)}
	case c.Seq != seq-1 || c.HeadHash != hex.EncodeToString(head):
		return nil, &checkpointError{fmt.Sprintf("checkpoint claims tree size %d with another head than the chain's at seq %d", c.Seq, seq-1)}
	}
	signed, err := c.Open(pub)
	if err != nil {
		return nil, &checkpointError{"checkpoint " + err.Error()}
	}
	if !bytes.Equal(signed[:], root) {
		return nil, &checkpointError{fmt.Sprintf("checkpoint signs tree size %d with another root than the rows'", c.Seq)}
	}
	return []byte(c.Note), nil
}
