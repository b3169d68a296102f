//go:build !linux

package testminio

import "syscall"

// sysProcAttr puts MinIO in its own process group (Close signals the group).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
