package discovery

import (
	"os/exec"
	"syscall"
)

// endWithHost has the kernel kill the plugin when pvlb dies, however it
// dies (SIGKILL included), as a backstop to the plugin noticing itself.
func endWithHost(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
