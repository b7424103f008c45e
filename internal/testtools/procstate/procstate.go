// Package procstate tells tests whether a process has ended, from Linux's
// /proc, for tests that check no plugin process outlives its host. It
// imports nothing of pvlb, so that any package's tests may use it.
package procstate

import (
	"fmt"
	"os"
	"strings"
)

// Ended reports whether pid has ended: gone, or a zombie (ended, waiting
// for a parent to reap it, which only that parent can do).
func Ended(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The command name, in parentheses, may hold spaces: the state is the
	// first field after its closing parenthesis.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) == 0 || fields[0] == "Z"
}
