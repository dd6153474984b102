package compat_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every server,
// client and lingering close is torn down by the test that made it. No
// goroutine is ignored; goleak's own retries cover grpc's transport
// goroutines that exit just after ClientConn.Close and Server.Stop return.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
