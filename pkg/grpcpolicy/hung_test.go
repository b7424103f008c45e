package grpcpolicy_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// startDemoProcess runs a demo server in a process of its own and returns
// it with its address; it is killed when the test ends.
func startDemoProcess(t *testing.T, name string) (*os.Process, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), demoServerEnv+"="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- line
	}()
	select {
	case a := <-addr:
		if len(a) < 2 {
			t.Fatal("the demo server process printed no address")
		}
		return cmd.Process, a[:len(a)-1]
	case <-time.After(10 * time.Second):
		t.Fatal("the demo server process did not start within 10s")
	}
	return nil, ""
}

// A server that hangs (SIGSTOP) while 32 callers with 5 s deadlines keep
// calling: round robin lets it catch a call from every caller, and calls
// stop; peak_ewma, which counts the time its waiting calls have gone
// unanswered, lets it catch some (8–26 in runs here) and the rest keep
// flowing.
func TestPeakEWMALeavesAHungServerAlone(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	hung, hungAddr := startDemoProcess(t, "server3")
	caught := map[string]uint64{}
	served := map[string]int64{}
	for _, kind := range []string{lb.RoundRobin, lb.PeakEWMA} {
		if err := hung.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		balancer := newBalancer(t, config(kind), servers)
		host, port := testtools.HostPort(hungAddr)
		if err := balancer.AddServer("server3", host, port, 1); err != nil {
			t.Fatal(err)
		}
		client, err := rpc.NewLoadBalancedClient(balancer, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		stub := pb.NewPeerVaultServiceClient(client)
		var ok, stoppedOK atomic.Int64
		var stopped atomic.Bool
		done := make(chan struct{})
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					if _, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"}); err == nil {
						ok.Add(1)
						if stopped.Load() {
							stoppedOK.Add(1)
						}
					}
					cancel()
				}
			})
		}
		// Let traffic flow to all three, then stop one mid-flow.
		testtools.WaitFor(t, "2,000 calls answered", func() bool { return ok.Load() >= 2000 })
		h, _ := balancer.Endpoint("server3")
		before := h.Requests()
		if err := hung.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped.Store(true)
		testtools.WaitFor(t, "calls to go on or stall", func() bool {
			return stoppedOK.Load() >= 5000 || h.Requests()-before >= 32
		})
		caught[kind] = h.Requests() - before
		close(done)
		_ = hung.Signal(syscall.SIGCONT) // let the calls caught on it end
		wg.Wait()
		served[kind] = stoppedOK.Load()
		client.Close()
	}
	t.Logf("calls sent to the hung server after it stopped: %v; calls answered after it stopped: %v", caught, served)
	if caught[lb.RoundRobin] < 16 {
		t.Errorf("round robin: only %d calls caught; the scenario does not reproduce", caught[lb.RoundRobin])
	}
	// The count caught swings with the load on two shared cores (0–9 on
	// a quiet machine, up to 23 beside other tests; round robin 32–55):
	// what must hold is that fewer are caught than round robin's one per
	// caller, and that calls keep flowing, where with round robin every
	// caller ends up waiting on the hung server.
	if caught[lb.PeakEWMA] > 24 || caught[lb.PeakEWMA] >= caught[lb.RoundRobin] {
		t.Errorf("peak_ewma: %d calls caught by the hung server (round robin %d), want under three quarters of the 32 callers and fewer than round robin", caught[lb.PeakEWMA], caught[lb.RoundRobin])
	}
	if served[lb.PeakEWMA] < 10*served[lb.RoundRobin] {
		t.Errorf("peak_ewma: %d calls answered after the stop, round robin %d; %d calls caught (round robin %d)",
			served[lb.PeakEWMA], served[lb.RoundRobin], caught[lb.PeakEWMA], caught[lb.RoundRobin])
	}
}
