package discovery

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger gives go-plugin an hclog.Logger that writes into slog: the
// plugin's own log lines (JSON on its stderr) arrive here with the plugin's
// name attached.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "",
		Level:      hclog.Debug,
		Output:     &slogSink{log: l},
		JSONFormat: true,
	})
}

// slogSink parses hclog's JSON lines back into slog records.
type slogSink struct{ log *slog.Logger }

func (s *slogSink) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		s.writeLine(sc.Bytes())
	}
	return len(p), nil
}

func (s *slogSink) writeLine(line []byte) {
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		s.log.Info(string(line))
		return
	}
	msg, _ := rec["@message"].(string)
	lvl, _ := rec["@level"].(string)
	var attrs []any
	for k, v := range rec {
		if !strings.HasPrefix(k, "@") {
			attrs = append(attrs, k, v)
		}
	}
	s.log.Log(context.Background(), slogLevel(lvl), msg, attrs...)
}

func slogLevel(l string) slog.Level {
	switch l {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// logWriter takes a plugin's raw stdout or stderr (what it prints outside
// its logger) line by line.
type logWriter struct {
	log    *slog.Logger
	stream string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.log.Info(line, "stream", w.stream)
		}
	}
	return len(p), nil
}

var _ io.Writer = logWriter{}
