package rpc_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// client, pool, health checker, channel and demo server must end on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
