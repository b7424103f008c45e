package lb

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

type sessionKey struct{}

// WithSession returns a context whose calls belong to the sticky session id.
// With sticky sessions enabled, every pick for that id goes to the same
// endpoint while it stays healthy and the session is used within its timeout.
func WithSession(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, sessionKey{}, id)
}

// SessionFromContext returns the session id set by WithSession.
func SessionFromContext(ctx context.Context) (string, bool) {
	if ctx == nil {
		return "", false
	}
	id, ok := ctx.Value(sessionKey{}).(string)
	return id, ok && id != ""
}

const sessionShards = 64

// sessionTable maps session ids to endpoints. It is sharded so that picks
// for different sessions rarely meet on a lock, and renewing a live binding
// takes only a shared lock and an atomic store. Expired bindings are swept
// lazily, a shard at a time, when new sessions arrive: no goroutine to stop.
type sessionTable struct {
	ttl    int64
	seed   maphash.Seed
	shards [sessionShards]sessionShard
}

type sessionShard struct {
	mu        sync.RWMutex
	bindings  map[string]*binding
	lastSweep int64
	_         [24]byte // keep neighbouring shards' locks off one cache line
}

type binding struct {
	endpoint atomic.Pointer[Endpoint]
	expires  atomic.Int64
}

func newSessionTable(ttl int64) *sessionTable {
	t := &sessionTable{ttl: ttl, seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].bindings = make(map[string]*binding)
	}
	return t
}

func (t *sessionTable) shard(id string) *sessionShard {
	return &t.shards[maphash.String(t.seed, id)%sessionShards]
}

// lookup returns the live binding's endpoint for id and renews it, or nil.
func (t *sessionTable) lookup(id string, now int64) *Endpoint {
	s := t.shard(id)
	s.mu.RLock()
	b := s.bindings[id]
	s.mu.RUnlock()
	if b == nil || b.expires.Load() <= now {
		return nil
	}
	b.expires.Store(now + t.ttl)
	return b.endpoint.Load()
}

// bind points id at e, creating the binding if needed.
func (t *sessionTable) bind(id string, e *Endpoint, now int64) {
	s := t.shard(id)
	s.mu.RLock()
	b := s.bindings[id]
	s.mu.RUnlock()
	if b == nil {
		s.mu.Lock()
		if b = s.bindings[id]; b == nil {
			if now-s.lastSweep >= t.ttl {
				s.sweep(now)
			}
			b = &binding{}
			s.bindings[id] = b
		}
		s.mu.Unlock()
	}
	b.endpoint.Store(e)
	b.expires.Store(now + t.ttl)
}

// sweep drops expired bindings; the caller holds s.mu.
func (s *sessionShard) sweep(now int64) {
	for id, b := range s.bindings {
		if b.expires.Load() <= now {
			delete(s.bindings, id)
		}
	}
	s.lastSweep = now
}

// active counts unexpired bindings.
func (t *sessionTable) active(now int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, b := range s.bindings {
			if b.expires.Load() > now {
				n++
			}
		}
		s.mu.RUnlock()
	}
	return n
}

// forget removes every binding to e, so a returning endpoint starts clean.
func (t *sessionTable) forget(e *Endpoint) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for id, b := range s.bindings {
			if b.endpoint.Load() == e {
				delete(s.bindings, id)
			}
		}
		s.mu.Unlock()
	}
}

type attemptKey struct{}

// Attempt carries, through a call's context, what the pick for one
// attempt needs from a caller that retries or hedges the call, and tells
// it back: the endpoints to avoid, and the one picked. The grpc-go
// channel's picker honours it, so that rpc's channel interceptor moves a
// retried call to a different endpoint, as LoadBalancedClient does.
type Attempt struct {
	Tried []*Endpoint
	// Picked, when set, is called with each endpoint picked for the
	// attempt.
	Picked func(*Endpoint)
	// waitingOn is the balancer whose max_pending counts the attempt
	// while it waits for a connection (see Wait); nil when not waiting.
	waitingOn *LoadBalancer
}

// Wait counts the attempt as waiting for a connection under lb's
// max_pending, once however often it is asked, and reports whether it may
// wait; a call that may not should fail at once.
func (a *Attempt) Wait(lb *LoadBalancer) bool {
	if a.waitingOn != nil || !lb.LimitsPending() {
		return true
	}
	if !lb.BeginPending() {
		return false
	}
	a.waitingOn = lb
	return true
}

// Waited ends the attempt's wait for a connection, if it was waiting: its
// endpoint was picked, or the call ended.
func (a *Attempt) Waited() {
	if a.waitingOn != nil {
		a.waitingOn.EndPending()
		a.waitingOn = nil
	}
}

// WithAttempt returns ctx carrying a.
func WithAttempt(ctx context.Context, a *Attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

// AttemptFromContext returns the Attempt ctx carries, or nil.
func AttemptFromContext(ctx context.Context) *Attempt {
	a, _ := ctx.Value(attemptKey{}).(*Attempt)
	return a
}
