package mcpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

// DefaultMaxLineBytes is the longest message the proxy relays, in bytes,
// newline excluded. A longer line is drained (so its writer never blocks on
// a full pipe) and answered with a JSON-RPC error for its id.
const DefaultMaxLineBytes = 128 << 20

// lineReader reads newline-delimited messages of any size: those up to max
// bytes whole, longer ones as an oversize summary.
type lineReader struct {
	r   *bufio.Reader
	max int
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// oversize is what the proxy learns of a line over the limit without
// holding it: its length and, if they could be read, its id, method and
// params.name (the members a refusal needs).
type oversize struct {
	size   int64
	id     jsontext.Value
	method string
	tool   string
}

// next returns the next line (without its newline), or an oversize summary.
// io.EOF ends the stream; a last line without a newline is still a line.
func (lr *lineReader) next() ([]byte, *oversize, error) {
	var line []byte
	for {
		chunk, err := lr.r.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil {
			line = line[:len(line)-1]
			if len(line) > lr.max {
				return nil, scanOversize(bytes.NewReader(line), int64(len(line)), lr.max), nil
			}
			return line, nil, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > lr.max {
				return nil, lr.drainOversize(line), nil
			}
			continue
		}
		if len(line) > 0 && errors.Is(err, io.EOF) {
			return line, nil, nil
		}
		return nil, nil, err
	}
}

// drainOversize reads the rest of a line already over the limit, looking
// for its id, method and tool name as it streams past.
func (lr *lineReader) drainOversize(head []byte) *oversize {
	rest := &untilNewline{r: lr.r}
	o := scanOversize(io.MultiReader(bytes.NewReader(head), rest), 0, lr.max)
	io.Copy(io.Discard, rest) // whatever the scan did not read
	o.size = int64(len(head)) + rest.n
	return o
}

// untilNewline reads from r up to and including the next newline, then
// reports io.EOF; n counts the bytes before the newline.
type untilNewline struct {
	r       *bufio.Reader
	pending []byte // the rest of the last chunk; valid until the next ReadSlice
	n       int64
	done    bool
}

func (u *untilNewline) Read(p []byte) (int, error) {
	for len(u.pending) == 0 {
		if u.done {
			return 0, io.EOF
		}
		chunk, err := u.r.ReadSlice('\n')
		switch {
		case err == nil:
			u.done, chunk = true, chunk[:len(chunk)-1]
		case !errors.Is(err, bufio.ErrBufferFull):
			u.done = true
		}
		u.n += int64(len(chunk))
		u.pending = chunk
	}
	n := copy(p, u.pending)
	u.pending = u.pending[n:]
	return n, nil
}

// scanOversize streams a too-long message through a strict decoder that
// keeps only the small members a refusal needs. It reads at most 4× the
// limit: past that the id is given up (the answer then carries id null).
func scanOversize(r io.Reader, size int64, max int) *oversize {
	o := &oversize{size: size}
	dec := jsontext.NewDecoder(io.LimitReader(r, 4*int64(max)+1), strictDecoding...)
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return o
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return o
		}
		switch name.String() {
		case "id":
			v, err := dec.ReadValue()
			if err != nil {
				return o
			}
			if len(v) <= 1024 {
				o.id = v.Clone()
			}
		case "method":
			v, err := dec.ReadValue()
			if err != nil {
				return o
			}
			if v.Kind() == '"' && len(v) <= 1024 {
				o.method = unquote(v)
			}
		case "params":
			if dec.PeekKind() != '{' {
				if dec.SkipValue() != nil {
					return o
				}
				continue
			}
			dec.ReadToken()
			for dec.PeekKind() != '}' {
				pn, err := dec.ReadToken()
				if err != nil {
					return o
				}
				if pn.String() == "name" {
					v, err := dec.ReadValue()
					if err != nil {
						return o
					}
					if v.Kind() == '"' && len(v) <= 1024 {
						o.tool = unquote(v)
					}
					continue
				}
				if dec.SkipValue() != nil {
					return o
				}
			}
			if _, err := dec.ReadToken(); err != nil {
				return o
			}
		default:
			if dec.SkipValue() != nil {
				return o
			}
		}
	}
	return o
}
