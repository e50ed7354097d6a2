package fleet

import (
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The Merkle tree of a host's log (the shared convention of agentpdp's
// checkpoints): its leaves are the rows in seq order, and a row's leaf
// hash is RFC 6962's SHA-256(0x00 || the row's 32-byte chain hash).
var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Tree is the compact range of rows 1…Size of one log: the roots of its
// perfect subtrees, enough to append rows and compute the root at any size
// without keeping every hash. The collector keeps one per origin.
type Tree struct{ r *compact.Range }

// NewTree is the empty tree.
func NewTree() *Tree { return &Tree{r: rangeFactory.NewEmptyRange(0)} }

// LoadTree rebuilds a tree of size leaves from its stored subtree hashes.
func LoadTree(size uint64, hashes [][]byte) (*Tree, error) {
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return &Tree{r: r}, nil
}

// Append adds a row by its chain hash.
func (t *Tree) Append(rowHash []byte) {
	// Append fails only on a range that does not start at 0, which a Tree
	// never is.
	_ = t.r.Append(rfc6962.DefaultHasher.HashLeaf(rowHash), nil)
}

// Size is the number of rows.
func (t *Tree) Size() uint64 { return t.r.End() }

// Hashes are the subtree hashes to store.
func (t *Tree) Hashes() [][]byte { return t.r.Hashes() }

// Root is the RFC 6962 root hash; that of the empty tree is SHA-256("").
func (t *Tree) Root() []byte {
	if t.r.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	root, _ := t.r.GetRootHash(nil)
	return root
}
