package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchSettle is how long WatchFiles waits after a change for more before
// it reports: an editor's save is often several writes and a rename.
const WatchSettle = 200 * time.Millisecond

// WatchFiles calls changed, from its own goroutine, whenever one of the
// configuration's files changes, as LoadPaths reads paths: a file, or the
// .hcl files of a folder, created, written, renamed or removed. Changes
// that come together are reported once, WatchSettle after the last. The
// folders are watched rather than the files, so that a file an editor
// replaces (write a copy, rename it over) is still followed. It watches
// until ctx ends; stop waits for its goroutine.
func WatchFiles(ctx context.Context, paths []string, changed func()) (stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch the configuration: %w", err)
	}
	files := map[string]bool{} // watched files, by clean path
	dirs := map[string]bool{}  // folders whose .hcl files are all watched
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("watch the configuration: %w", err)
		}
		dir := filepath.Dir(abs)
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			dir = abs
			dirs[abs] = true
		} else {
			files[abs] = true
		}
		if err := w.Add(dir); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch the configuration's folder %s: %w", dir, err)
		}
	}
	relevant := func(name string) bool {
		abs, err := filepath.Abs(name)
		if err != nil {
			return false
		}
		return files[abs] || (dirs[filepath.Dir(abs)] && strings.HasSuffix(abs, ".hcl"))
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.Close()
		settle := time.NewTimer(time.Hour)
		settle.Stop()
		defer settle.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op != fsnotify.Chmod && relevant(ev.Name) {
					settle.Reset(WatchSettle)
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				// Events were lost (the queue overflowed): one may have
				// been a change.
				settle.Reset(WatchSettle)
			case <-settle.C:
				changed()
			}
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}
