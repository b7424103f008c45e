package lb

import "sync"

// liveSchedule serves weighted picks whose period is too long to precompute.
// It is the one place a pick takes a lock; configurations reach it only with
// many endpoints and large, coprime weights.
type liveSchedule struct {
	mu  sync.Mutex
	edf *edf
}

func (l *liveSchedule) pick(eps []*Endpoint, triedList []*Endpoint) *Endpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := eps[l.edf.next()]
	for step := 1; step <= retryScanLimit && len(triedList) != 0 && tried(triedList, e); step++ {
		e = eps[l.edf.next()]
	}
	if len(triedList) != 0 && tried(triedList, e) {
		return firstUntried(eps, 0, triedList)
	}
	return e
}
