// Package plural writes counts as English does: "1 row", "2 rows",
// "0 policies". Every count a command prints goes through it, so that no
// message reads "1 checkpoints".
package plural

import "strconv"

// Integer is any integer a count is kept in.
type Integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// Count is n followed by one (when n is 1) or many: Count(1, "policy",
// "policies") is "1 policy", Count(3, "policy", "policies") "3 policies".
func Count[N Integer](n N, one, many string) string {
	return strconv.FormatInt(int64(n), 10) + " " + Word(n, one, many)
}

// Word is one when n is 1, else many: for a verb or noun that follows a
// count given elsewhere ("1 row is", "2 rows are").
func Word[N Integer](n N, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
