// Package testtools builds and runs the real servers pvlb's tests talk to
// (etcd; Consul later). They are built from source with the Go module
// proxy, in the separate testenv module so that their dependencies stay out
// of pvlb's, into a cache folder that survives between runs:
// $PVLB_TOOLS_DIR, or the user cache folder's pvlb-tools.
package testtools

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

// Dir is where built tools are kept.
func Dir() string {
	if d := os.Getenv("PVLB_TOOLS_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pvlb-tools")
	}
	return filepath.Join(os.TempDir(), "pvlb-tools")
}

// repoRoot finds the folder holding testenv/go.mod above the working
// directory (a package's folder under go test).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "testenv", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no testenv/go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of tool (built from testenv/<pkg>, versioned by
// version), building it first when it is missing. Parallel test packages
// take a file lock so that only one builds.
func Binary(tool, pkg, version string) (string, error) {
	return BinaryFrom(tool, version, pkg, "")
}

// BinaryFrom is Binary for a tool built from a package path (target) in
// the module testenv/<pkg>, with extra go build arguments.
func BinaryFrom(tool, version, pkg, target string, buildArgs ...string) (string, error) {
	dir := filepath.Join(Dir(), tool+"-"+version)
	path := filepath.Join(dir, tool)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(path); err == nil {
		return path, nil // another package built it while we waited
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	cmd := exec.Command("go", "build", "-o", tmp, "./"+pkg)
	cmd.Dir = filepath.Join(root, "testenv")
	if _, err := os.Stat(filepath.Join(cmd.Dir, pkg, "go.mod")); err == nil {
		// A tool with a module of its own, to keep its dependencies apart.
		if target == "" {
			target = "."
		}
		cmd = exec.Command("go", append(append([]string{"build", "-o", tmp}, buildArgs...), target)...)
		cmd.Dir = filepath.Join(root, "testenv", pkg)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", tool, err, out)
	}
	return path, os.Rename(tmp, path)
}

// TB is what the helpers need of a test: testing.TB satisfies it, and so
// does a small adapter over testscript's TestScript.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Require returns the tool's path or ends the test: under CI=true a missing
// tool fails (CI must never skip silently), elsewhere it skips, saying how
// to build it.
func Require(t TB, tool, pkg, version string) string {
	t.Helper()
	path, err := Binary(tool, pkg, version)
	if err == nil {
		return path
	}
	how := fmt.Sprintf("build it with: (cd testenv/%s && go build -o %s .) or, for tools without a module of their own, (cd testenv && go build -o %[2]s ./%[1]s)", pkg, filepath.Join(Dir(), tool+"-"+version, tool))
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed and could not be built: %v\n%s", tool, err, how)
	}
	t.Skipf("%s is not available (%v); %s", tool, err, how)
	return ""
}

// BuildPlugin builds the plugin executable in package pkg (a path relative
// to the test's folder, like "./pvlb-discovery-etcd") as
// pvlb-discovery-KIND into a new folder, and returns the folder.
func BuildPlugin(t TB, pkg, kind string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "pvlb-discovery-"+kind), pkg).CombinedOutput(); err != nil {
		t.Fatalf("build the %s plugin: %v\n%s", kind, err, out)
	}
	return dir
}

// Settings encodes m as a provider's settings, for tests of providers.
func Settings(t TB, m map[string]any) pluginapi.Settings {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return pluginapi.NewSettings(b)
}
