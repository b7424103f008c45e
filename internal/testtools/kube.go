package testtools

import (
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the kube-apiserver built for tests.
const KubeVersion = "v1.37.2"

// KubeAPIServer builds (when missing) and returns the kube-apiserver,
// stamped with its version as Kubernetes' own build does.
func KubeAPIServer() (string, error) {
	return BinaryFrom("kube-apiserver", KubeVersion, "kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver",
		"-tags", "tools",
		"-ldflags", "-X k8s.io/component-base/version.gitVersion="+KubeVersion+
			" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37")
}

// Kube is a real API server (with the tests' etcd) started by envtest.
type Kube struct {
	Env    *envtest.Environment
	Config *rest.Config
	t      TB
}

// StartKube starts kube-apiserver and etcd with envtest and stops them when
// the test ends.
func StartKube(t TB) *Kube {
	t.Helper()
	etcd := Require(t, "etcd", "etcd", EtcdVersion)
	api, err := KubeAPIServer()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("kube-apiserver is needed and could not be built: %v", err)
		}
		t.Skipf("kube-apiserver is not available: %v", err)
	}
	// envtest wants both in one folder.
	assets := t.TempDir()
	for _, bin := range []string{etcd, api} {
		if err := os.Symlink(bin, filepath.Join(assets, filepath.Base(bin))); err != nil {
			t.Fatalf("%v", err)
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	// A certificate folder of our own (rather than envtest's throwaway
	// one) survives a Stop, so a restarted API server keeps its
	// certificates and every kubeconfig stays valid.
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: t.TempDir()}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return &Kube{Env: env, Config: cfg, t: t}
}

// Kubeconfig writes a kubeconfig for a user in groups (system:masters for
// an administrator; none for an account without permissions) and returns
// its path.
func (k *Kube) Kubeconfig(name string, groups ...string) string {
	k.t.Helper()
	user, err := k.Env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		k.t.Fatalf("add user: %v", err)
	}
	b, err := user.KubeConfig()
	if err != nil {
		k.t.Fatalf("kubeconfig: %v", err)
	}
	path := filepath.Join(k.t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		k.t.Fatalf("%v", err)
	}
	return path
}
