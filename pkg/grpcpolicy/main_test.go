package grpcpolicy_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/peervault/pvlb/pkg/demoserver"
)

// demoServerEnv makes the test binary a demo server, for tests that need
// one in a process of its own (to stop it with SIGSTOP).
const demoServerEnv = "PVLB_TEST_DEMO_SERVER"

// TestMain fails the package if any test leaves a goroutine behind; run
// with demoServerEnv set, it serves as a demo server until killed.
func TestMain(m *testing.M) {
	if name := os.Getenv(demoServerEnv); name != "" {
		s, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: name}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(s.Addr())
		select {}
	}
	goleak.VerifyTestMain(m)
}
