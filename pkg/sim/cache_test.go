package sim

import (
	"math/rand/v2"
	"testing"
)

// The cache holds exactly the most recently touched keys, checked against
// a plain list after every touch.
func TestKeyCacheIsLRU(t *testing.T) {
	c := newKeyCache(5)
	var recent []int32 // most recent first
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		k := int32(r.IntN(12))
		want := false
		for i, x := range recent {
			if x == k {
				want = true
				recent = append(recent[:i], recent[i+1:]...)
				break
			}
		}
		recent = append([]int32{k}, recent...)
		if len(recent) > 5 {
			recent = recent[:5]
		}
		if got := c.touch(k); got != want {
			t.Fatalf("touch(%d) = %v, want %v (recent %v)", k, got, want, recent)
		}
		var list []int32
		for i := c.head; i >= 0; i = c.next[i] {
			list = append(list, c.key[i])
		}
		if len(list) != len(recent) || len(c.slot) != len(recent) {
			t.Fatalf("cache holds %v, want %v", list, recent)
		}
		for i := range list {
			if list[i] != recent[i] {
				t.Fatalf("cache holds %v, want %v", list, recent)
			}
		}
	}
	c.clear()
	if c.touch(3) {
		t.Error("a cleared cache still held a key")
	}
}
