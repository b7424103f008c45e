package lb

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// RetryBudget is Finagle's and Linkerd's retry budget, a `budget` block
// of a service's retry: over any TTL, retries may be at most Percent of
// the calls made plus MinRetriesPerSecond × TTL, so that retries cannot
// multiply the load on a failing service (a retry storm) however many
// times each call may be retried.
type RetryBudget struct {
	// Percent is the share of calls that may be retried, 0 to 1000 (a
	// call may be retried more than once); default 20.
	Percent float64 `json:"percent"`
	// MinRetriesPerSecond lets a client that sends few calls retry still:
	// a reserve of this many per second of TTL; default 10.
	MinRetriesPerSecond float64 `json:"min_retries_per_second"`
	// TTL is how long a call or a retry counts, 1s to 60s; default 10s.
	TTL time.Duration `json:"ttl"`
}

// DefaultRetryBudget returns Finagle's, Linkerd's and tower's defaults.
func DefaultRetryBudget() RetryBudget {
	return RetryBudget{Percent: 20, MinRetriesPerSecond: 10, TTL: 10 * time.Second}
}

// Validate reports a setting out of its range.
func (b RetryBudget) Validate() error {
	switch {
	case !(b.Percent >= 0 && b.Percent <= 1000):
		return fmt.Errorf("retry budget: percent must be from 0 to 1000, not %g", b.Percent)
	case !(b.MinRetriesPerSecond >= 0 && b.MinRetriesPerSecond <= 1e6):
		return fmt.Errorf("retry budget: min_retries_per_second must be from 0 to 1000000, not %g", b.MinRetriesPerSecond)
	case b.TTL < time.Second || b.TTL > time.Minute:
		return fmt.Errorf("retry budget: ttl must be from 1s to 1m, not %s", b.TTL)
	}
	return nil
}

// RetryThrottling is gRFC A6's retryThrottling, a `throttling` block of a
// service's retry: a token count that starts at MaxTokens, loses one per
// failed call (of a code that is retried) and gains TokenRatio per
// success; retries stop while it is at or below half of MaxTokens.
type RetryThrottling struct {
	MaxTokens  float64 `json:"max_tokens"`
	TokenRatio float64 `json:"token_ratio"`
}

// Validate reports a setting out of A6's ranges.
func (t RetryThrottling) Validate() error {
	switch {
	case !(t.MaxTokens > 0 && t.MaxTokens <= 1000):
		return fmt.Errorf("retry throttling: max_tokens must be over 0 and at most 1000, not %g", t.MaxTokens)
	case !(t.TokenRatio > 0 && t.TokenRatio <= 1000):
		return fmt.Errorf("retry throttling: token_ratio must be over 0, not %g", t.TokenRatio)
	}
	return nil
}

// RetryLimiter decides whether a failed call may be retried, from the
// calls the client made and how they went: a retry budget, throttling, or
// both. One limiter serves every call of a client; it is safe for
// concurrent use and allocates nothing.
type RetryLimiter struct {
	budget   *budgetState
	throttle *throttleState

	refused atomic.Uint64
}

// NewRetryLimiter returns a limiter with the budget and throttling given
// (either may be nil), its time starting at start.
func NewRetryLimiter(budget *RetryBudget, throttling *RetryThrottling, start time.Time) (*RetryLimiter, error) {
	l := &RetryLimiter{}
	if budget != nil {
		if err := budget.Validate(); err != nil {
			return nil, err
		}
		l.budget = newBudgetState(*budget, start)
	}
	if throttling != nil {
		if err := throttling.Validate(); err != nil {
			return nil, err
		}
		l.throttle = &throttleState{max: milli(throttling.MaxTokens), ratio: milli(throttling.TokenRatio)}
		l.throttle.tokens.Store(l.throttle.max)
	}
	return l, nil
}

// Call records a call's first attempt, made at now (which the caller
// has, for the call's own timing): it adds to what the budget allows.
func (l *RetryLimiter) Call(now time.Time) {
	if l != nil && l.budget != nil {
		l.budget.deposit(now)
	}
}

// Result records how an attempt ended, for throttling: a failure that
// would be retried costs a token, a success earns token_ratio. Other
// failures leave the tokens as they are (A6).
func (l *RetryLimiter) Result(ok, retryable bool) {
	if l == nil || l.throttle == nil {
		return
	}
	switch {
	case ok:
		l.throttle.add(l.throttle.ratio)
	case retryable:
		l.throttle.add(-1000)
	}
}

// Retry reports whether one more attempt of a failed call may be sent at
// now, and takes it from the budget if so. A refusal is counted
// (Refused).
func (l *RetryLimiter) Retry(now time.Time) bool {
	if l == nil {
		return true
	}
	if l.throttle != nil && !l.throttle.allows() {
		l.refused.Add(1)
		return false
	}
	if l.budget != nil && !l.budget.withdraw(now) {
		l.refused.Add(1)
		return false
	}
	return true
}

// Refused is how many retries the limiter has refused.
func (l *RetryLimiter) Refused() uint64 {
	if l == nil {
		return 0
	}
	return l.refused.Load()
}

// milli is a quantity in thousandths, for integer atomics.
func milli(f float64) int64 { return int64(math.Round(f * 1000)) }

// budgetSlots divide the TTL, as tower's and Finagle's do: a deposit or a
// withdrawal counts until its slot comes round again.
const budgetSlots = 10

// budgetState keeps the budget's balance in thousandths of a retry: each
// call deposits Percent×10, each retry withdraws 1000, over a window of
// budgetSlots slots, on top of a fixed reserve of MinRetriesPerSecond ×
// TTL retries.
type budgetState struct {
	deposit1 int64
	reserve  int64
	slotLen  int64 // nanoseconds
	start    time.Time
	slots    [budgetSlots]atomic.Int64
	current  atomic.Int64 // the slot number (time since start / slotLen) being written
	mu       sync.Mutex   // taken only to move to a new slot
}

func newBudgetState(b RetryBudget, now time.Time) *budgetState {
	return &budgetState{
		deposit1: milli(b.Percent / 100),
		reserve:  milli(b.MinRetriesPerSecond * b.TTL.Seconds()),
		slotLen:  int64(b.TTL / budgetSlots),
		start:    now,
	}
}

// slot returns the slot for now, clearing the ones that expired since the
// last call.
func (b *budgetState) slot(now time.Time) *atomic.Int64 {
	n := int64(now.Sub(b.start)) / b.slotLen
	if cur := b.current.Load(); n > cur {
		b.mu.Lock()
		if cur = b.current.Load(); n > cur {
			for i := cur + 1; i <= min(n, cur+budgetSlots); i++ {
				b.slots[i%budgetSlots].Store(0)
			}
			b.current.Store(n)
		}
		b.mu.Unlock()
	}
	return &b.slots[max(n, 0)%budgetSlots]
}

func (b *budgetState) deposit(now time.Time) { b.slot(now).Add(b.deposit1) }

func (b *budgetState) withdraw(now time.Time) bool {
	s := b.slot(now)
	sum := b.reserve
	for i := range b.slots {
		sum += b.slots[i].Load()
	}
	if sum < 1000 {
		return false
	}
	// Two retries racing for the last token may both get it: the budget
	// is a bound on load, not an exact count.
	s.Add(-1000)
	return true
}

// throttleState is A6's token count, in thousandths.
type throttleState struct {
	tokens     atomic.Int64
	max, ratio int64
}

func (t *throttleState) add(delta int64) {
	for {
		old := t.tokens.Load()
		v := min(max(old+delta, 0), t.max)
		if v == old || t.tokens.CompareAndSwap(old, v) {
			return
		}
	}
}

func (t *throttleState) allows() bool { return t.tokens.Load() > t.max/2 }
