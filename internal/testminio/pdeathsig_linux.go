package testminio

import "syscall"

// sysProcAttr puts MinIO in its own process group (Close signals the group) and has the kernel
// kill it when the test process dies without calling Close (a test timeout's panic).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
