package discovery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

// NoMTLSEnv, set to any value, turns go-plugin's AutoMTLS off, for
// debugging a plugin's traffic. Never set it in production.
const NoMTLSEnv = "PVLB_PLUGIN_NO_MTLS"

// StartTimeout bounds a plugin's start: handshake and first answer.
const StartTimeout = 10 * time.Second

// StopTimeout bounds stopping a plugin: go-plugin asks it to shut down and
// waits two seconds for it to exit; one that does not answer at all (a
// stopped or hung process) would keep that request waiting forever. Past
// the bound the process is killed.
const StopTimeout = 3 * time.Second

// Host starts plugins and stops them all on Close.
type Host struct {
	finder *Finder
	log    *slog.Logger
	// ConfigureTimeout bounds a plugin's Configure call (default
	// StartTimeout): a plugin that hangs there is killed.
	ConfigureTimeout time.Duration
	// LivenessInterval is how often a followed plugin is asked whether it
	// still answers, and LivenessTimeout how long it has to answer (default
	// 10s and 5s); one that does not is logged, killed and started again,
	// while the balancer keeps the last endpoints.
	LivenessInterval, LivenessTimeout time.Duration

	mu      sync.Mutex
	running map[*Running]struct{}
	closed  bool
}

// NewHost returns a host that finds plugins with finder.
func NewHost(finder *Finder, logger *slog.Logger) *Host {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Host{finder: finder, log: logger, running: map[*Running]struct{}{}, ConfigureTimeout: StartTimeout,
		LivenessInterval: 10 * time.Second, LivenessTimeout: 5 * time.Second}
}

// Finder returns the host's finder.
func (h *Host) Finder() *Finder { return h.finder }

// Running is one started plugin process.
type Running struct {
	Plugin   *Plugin
	Provider *pluginapi.Client
	// Version is the protocol version negotiated with the plugin.
	Version int
	client  *plugin.Client
	cmd     *exec.Cmd
	host    *Host
	stop    sync.Once
	stopped atomic.Bool
}

// killed reports whether Kill was called.
func (r *Running) killed() bool { return r.stopped.Load() }

// Pid returns the plugin's process id.
func (r *Running) Pid() int {
	if rc := r.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Exited reports whether the plugin process has ended.
func (r *Running) Exited() bool { return r.client.Exited() }

// Kill ends the plugin process, within StopTimeout however it behaves.
func (r *Running) Kill() {
	r.stopped.Store(true)
	r.stop.Do(func() {
		done := make(chan struct{})
		go func() {
			r.client.Kill()
			close(done)
		}()
		t := time.NewTimer(StopTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			r.host.log.Warn("discovery plugin did not stop; killing it", "plugin", r.Plugin.Kind, "pid", r.Pid())
			if pid := r.Pid(); pid > 0 {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill() // SIGKILL ends even a stopped process
				}
			}
			<-done // go-plugin's Kill returns once the process is gone
		}
		untrack(r.cmd)
	})
	r.host.mu.Lock()
	delete(r.host.running, r)
	r.host.mu.Unlock()
}

// Launch finds and starts the plugin for kind. A non-empty pin is the
// executable's expected SHA-256 in hex; a mismatch refuses to start it.
func (h *Host) Launch(ctx context.Context, kind, pin string) (*Running, error) {
	p, err := h.finder.Find(kind)
	if err != nil {
		return nil, err
	}
	return h.Start(ctx, p, pin)
}

// Start starts p.
func (h *Host) Start(ctx context.Context, p *Plugin, pin string) (*Running, error) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errors.New("plugin host is closed")
	}
	var secure *plugin.SecureConfig
	if pin != "" {
		sum, err := hex.DecodeString(strings.TrimSpace(pin))
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("plugin %q: sha256 %q is not 64 hex digits", p.Kind, pin)
		}
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = os.Environ()
	endWithHost(cmd)
	logger := h.log.With("plugin", p.Kind)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginapi.Handshake,
		VersionedPlugins: pluginapi.PluginSet(nil),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         os.Getenv(NoMTLSEnv) == "",
		StartTimeout:     StartTimeout,
		Logger:           newHCLogger(logger),
		SyncStdout:       logWriter{logger, "stdout"},
		SyncStderr:       logWriter{logger, "stderr"},
	})
	r := &Running{Plugin: p, client: client, cmd: cmd, host: h}
	started := make(chan error, 1)
	go func() {
		err := r.connect()
		track(cmd)
		started <- err
	}()
	var err error
	select {
	case err = <-started:
	case <-ctx.Done():
		r.Kill()
		<-started
		untrack(cmd)
		return nil, fmt.Errorf("plugin %q (%s): start: %w", p.Kind, p.Path, ctx.Err())
	}
	if err != nil {
		r.Kill()
		return nil, fmt.Errorf("plugin %q (%s): %w", p.Kind, p.Path, err)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		r.Kill()
		return nil, errors.New("plugin host is closed")
	}
	h.running[r] = struct{}{}
	h.mu.Unlock()
	logger.Debug("plugin started", "path", p.Path, "protocol", r.Version, "pid", r.Pid())
	return r, nil
}

// connect performs the handshake and dispenses the provider.
func (r *Running) connect() error {
	rpc, err := r.client.Client()
	if err != nil {
		return describeStartError(err)
	}
	r.Version = r.client.NegotiatedVersion()
	if r.Version != pluginapi.ProtocolVersion {
		return fmt.Errorf("speaks discovery protocol %d; this pvlb speaks %d", r.Version, pluginapi.ProtocolVersion)
	}
	raw, err := rpc.Dispense(pluginapi.PluginName)
	if err != nil {
		return fmt.Errorf("dispense: %w", err)
	}
	provider, ok := raw.(*pluginapi.Client)
	if !ok {
		return fmt.Errorf("dispensed a %T, not a discovery provider", raw)
	}
	r.Provider = provider
	return nil
}

// describeStartError turns go-plugin's start errors into what to do.
func describeStartError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		return errors.New("its sha256 does not match the pinned checksum; the executable changed since it was pinned")
	case strings.Contains(strings.ToLower(msg), "incompatible api version"), strings.Contains(msg, "Incompatible core API version"),
		strings.Contains(msg, "Unsupported plugin protocol"):
		return fmt.Errorf("speaks another plugin protocol than this pvlb (%d): %s", pluginapi.ProtocolVersion, msg)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("did not complete the plugin handshake within %s", StartTimeout)
	case strings.Contains(msg, "plugin exited before we could connect"),
		strings.TrimSpace(firstLine(msg)) == "Unrecognized remote plugin message:":
		return errors.New("exited before completing the plugin handshake (its output is in pvlb's log)")
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		return fmt.Errorf("printed something other than the plugin handshake: %s", firstLine(msg))
	}
	return err
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Close kills every plugin the host started.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	running := make([]*Running, 0, len(h.running))
	for r := range h.running {
		running = append(running, r)
	}
	h.running = map[*Running]struct{}{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Kill()
		}()
	}
	wg.Wait()
}

// started holds every plugin process this program started and has not
// yet stopped, across hosts, for KillAll.
var started = struct {
	sync.Mutex
	cmds map[*exec.Cmd]struct{}
}{cmds: map[*exec.Cmd]struct{}{}}

func track(cmd *exec.Cmd) {
	started.Lock()
	defer started.Unlock()
	if cmd.Process != nil {
		started.cmds[cmd] = struct{}{}
	}
}

func untrack(cmd *exec.Cmd) {
	started.Lock()
	defer started.Unlock()
	delete(started.cmds, cmd)
}

// KillAll kills every plugin process this program started and has not
// stopped, at once and without asking: for a program about to exit
// without time to Close its hosts (a second Ctrl-C, say).
func KillAll() {
	started.Lock()
	defer started.Unlock()
	for cmd := range started.cmds {
		_ = cmd.Process.Kill()
	}
}
