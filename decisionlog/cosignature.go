package decisionlog

// KindCosignature rows keep, in the host's own log, a witness's
// cosignature of one of its checkpoints, as the collector answered it to
// the http sink (witness: true). They are evidence from off the host, so a
// cosignature row alone does not make a checkpoint due: an idle log would
// otherwise sign, be cosigned, and store a row forever.
const KindCosignature Kind = "cosignature"

// Cosignature is the body of a cosignature row.
type Cosignature struct {
	TreeSize   int64  `json:"tree_size"`  // the checkpoint's tree size
	Checkpoint string `json:"checkpoint"` // the C2SP note, with the host's signature and the witness's cosignature (c2sp.org/tlog-cosignature)
	Witness    string `json:"witness"`    // where it came from: the sink's name
}
