package decisionlog

// Cosignature is the body of a cosignature row.
type Cosignature struct {
	TreeSize   int64  `json:"tree_size"`  // the checkpoint's tree size
	Checkpoint string `json:"checkpoint"` // the C2SP note, with the host's signature and the witness's cosignature (c2sp.org/tlog-cosignature)
	Witness    string `json:"witness"`    // where it came from: the sink's name
}
