package lb

import (
	"sync"
	"testing"
	"time"
)

func newLimiter(t *testing.T, b *RetryBudget, th *RetryThrottling) (*RetryLimiter, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1000, 0)} // lb_test.go's
	l, err := NewRetryLimiter(b, th, clock.now())
	if err != nil {
		t.Fatal(err)
	}
	return l, clock
}

func retries(l *RetryLimiter, clock *fakeClock, n int) int {
	ok := 0
	for range n {
		if l.Retry(clock.now()) {
			ok++
		}
	}
	return ok
}

// The budget's cases, as tower's tests of the same algorithm have them.
func TestRetryBudget(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		l, clock := newLimiter(t, &RetryBudget{Percent: 100, TTL: time.Second}, nil)
		if l.Retry(clock.now()) {
			t.Error("a budget with no calls and no reserve allowed a retry")
		}
		if l.Refused() != 1 {
			t.Errorf("refused %d, want 1", l.Refused())
		}
	})
	t.Run("leaky", func(t *testing.T) {
		l, clock := newLimiter(t, &RetryBudget{Percent: 100, TTL: time.Second}, nil)
		l.Call(clock.now())
		clock.advance(3 * time.Second)
		if l.Retry(clock.now()) {
			t.Error("a call three TTLs ago still allowed a retry")
		}
	})
	t.Run("slots", func(t *testing.T) {
		l, clock := newLimiter(t, &RetryBudget{Percent: 50, TTL: time.Second}, nil)
		l.Call(clock.now())
		l.Call(clock.now())
		clock.advance(901 * time.Millisecond)
		if !l.Retry(clock.now()) {
			t.Error("two calls at 50% within the TTL allow a retry")
		}
		clock.advance(2001 * time.Millisecond)
		l.Call(clock.now())
		clock.advance(301 * time.Millisecond)
		l.Call(clock.now())
		clock.advance(801 * time.Millisecond)
		l.Call(clock.now())
		if !l.Retry(clock.now()) {
			t.Error("the second and third calls are within the TTL and allow a retry")
		}
	})
	t.Run("reserve", func(t *testing.T) {
		l, clock := newLimiter(t, &RetryBudget{Percent: 100, MinRetriesPerSecond: 5, TTL: time.Second}, nil)
		if got := retries(l, clock, 6); got != 5 {
			t.Errorf("%d retries from a reserve of 5", got)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		// 20% of 1,000 calls plus 10 a second over 10 s: 300 retries.
		b := DefaultRetryBudget()
		l, clock := newLimiter(t, &b, nil)
		for range 1000 {
			l.Call(clock.now())
		}
		if got := retries(l, clock, 1000); got != 300 {
			t.Errorf("%d retries, want 200 + 100", got)
		}
		// Ten seconds on, the calls and retries have expired: the reserve
		// is back, the calls' share is gone.
		clock.advance(10*time.Second + time.Millisecond)
		if got := retries(l, clock, 1000); got != 100 {
			t.Errorf("%d retries a TTL later, want the reserve's 100", got)
		}
	})
}

// A6's throttling: tokens start full, failures cost one, successes earn
// token_ratio, and retries stop at or below half.
func TestRetryThrottling(t *testing.T) {
	l, clock := newLimiter(t, nil, &RetryThrottling{MaxTokens: 10, TokenRatio: 0.1})
	for i := range 5 {
		if !l.Retry(clock.now()) {
			t.Fatalf("refused after %d failures, with %d of 10 tokens", i, 10-i)
		}
		l.Result(false, true)
	}
	if l.Retry(clock.now()) {
		t.Error("5 of 10 tokens left: retries must stop")
	}
	l.Result(false, false) // a failure that is not retried costs nothing
	for range 10 {
		l.Result(true, false)
	}
	if !l.Retry(clock.now()) {
		t.Error("ten successes earned a token: 6 of 10")
	}
	for range 100 {
		l.Result(true, false)
	}
	for range 4 {
		l.Result(false, true)
	}
	if !l.Retry(clock.now()) {
		t.Error("tokens are capped at 10; four failures leave 6")
	}
}

func TestRetryLimiterSettings(t *testing.T) {
	for _, b := range []RetryBudget{{Percent: -1, TTL: time.Second}, {Percent: 20, TTL: 0}, {Percent: 20, TTL: 2 * time.Minute}, {Percent: 2000, TTL: time.Second}} {
		if _, err := NewRetryLimiter(&b, nil, time.Now()); err == nil {
			t.Errorf("%+v: no error", b)
		}
	}
	for _, th := range []RetryThrottling{{MaxTokens: 0, TokenRatio: 1}, {MaxTokens: 1001, TokenRatio: 1}, {MaxTokens: 10, TokenRatio: 0}} {
		if _, err := NewRetryLimiter(nil, &th, time.Now()); err == nil {
			t.Errorf("%+v: no error", th)
		}
	}
	var none *RetryLimiter
	none.Call(time.Now())
	none.Result(false, true)
	if !none.Retry(time.Now()) || none.Refused() != 0 {
		t.Error("a nil limiter limits nothing")
	}
}

// Concurrent calls and retries keep the bound (within the few retries
// that race for the last tokens).
func TestRetryBudgetConcurrent(t *testing.T) {
	b := RetryBudget{Percent: 20, MinRetriesPerSecond: 0, TTL: time.Minute}
	start := time.Now()
	l, err := NewRetryLimiter(&b, nil, start)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 5000 {
				l.Call(start)
				if l.Retry(start) {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if allowed > 8000+8 || allowed < 7900 {
		t.Errorf("%d retries for 40,000 calls at 20%%, want about 8,000", allowed)
	}
}

func BenchmarkRetryLimiter(b *testing.B) {
	budget := DefaultRetryBudget()
	now := time.Now()
	l, _ := NewRetryLimiter(&budget, &RetryThrottling{MaxTokens: 10, TokenRatio: 0.1}, now)
	b.ReportAllocs()
	b.Run("call", func(b *testing.B) {
		for b.Loop() {
			l.Call(now)
			l.Result(true, false)
		}
	})
	b.Run("call-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Call(now)
				l.Result(true, false)
			}
		})
	})
	b.Run("retry", func(b *testing.B) {
		for b.Loop() {
			l.Call(now)
			l.Retry(now)
		}
	})
}
