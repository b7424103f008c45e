package rpc_test

import (
	"time"

	"google.golang.org/grpc/backoff"
)

var backoffQuick = backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond}
