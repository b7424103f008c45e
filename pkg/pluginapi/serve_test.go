package pluginapi

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools/procstate"
)

// The helper roles of the test binary, for TestPluginExitsWhenOrphaned.
const (
	roleEnv    = "PVLB_TEST_SERVE_ROLE"
	middleRole = "middle" // starts a plugin-like child, prints its pid, exits
	childRole  = "child"  // watches its parent as Serve does, forever
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case middleRole:
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), roleEnv+"="+childRole)
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(child.Process.Pid)
		os.Exit(0) // without a word to the child
	case childRole:
		exitWithParent(os.Getppid(), 20*time.Millisecond)
		os.Exit(3) // not reached: the parent is there until it is not
	}
	os.Exit(m.Run())
}

// A plugin whose parent ends without stopping it (no kernel help asked
// for) notices and exits by itself.
func TestPluginExitsWhenOrphaned(t *testing.T) {
	middle := exec.Command(os.Args[0], "-test.run=^$")
	middle.Env = append(os.Environ(), roleEnv+"="+middleRole)
	out, err := middle.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("child pid %q: %v", out, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !procstate.Ended(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("orphaned child %d still running after 5s", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
