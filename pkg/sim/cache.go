package sim

// keyCache is a simulated server's least-recently-used cache of request
// keys, in arrays sized once: touching a key allocates nothing once the
// cache is full.
type keyCache struct {
	capacity   int32
	slot       map[int32]int32 // key → its entry
	key        []int32
	prev, next []int32 // the recency list, most recent at head
	head, tail int32
}

func newKeyCache(capacity int) *keyCache {
	return &keyCache{capacity: int32(capacity), slot: make(map[int32]int32), head: -1, tail: -1}
}

// touch reports whether key was cached and makes it the most recent,
// evicting the least recent when the cache is full.
func (c *keyCache) touch(key int32) bool {
	if i, ok := c.slot[key]; ok {
		c.unlink(i)
		c.pushFront(i)
		return true
	}
	var i int32
	if n := int32(len(c.key)); n < c.capacity {
		c.key, c.prev, c.next = append(c.key, key), append(c.prev, -1), append(c.next, -1)
		i = n
	} else {
		i = c.tail
		c.unlink(i)
		delete(c.slot, c.key[i])
		c.key[i] = key
	}
	c.slot[key] = i
	c.pushFront(i)
	return false
}

func (c *keyCache) unlink(i int32) {
	p, n := c.prev[i], c.next[i]
	if p >= 0 {
		c.next[p] = n
	} else {
		c.head = n
	}
	if n >= 0 {
		c.prev[n] = p
	} else {
		c.tail = p
	}
}

func (c *keyCache) pushFront(i int32) {
	c.prev[i], c.next[i] = -1, c.head
	if c.head >= 0 {
		c.prev[c.head] = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

// clear empties the cache, as a restart does.
func (c *keyCache) clear() {
	clear(c.slot)
	c.key, c.prev, c.next = c.key[:0], c.prev[:0], c.next[:0]
	c.head, c.tail = -1, -1
}
