package gateway

import (
	"syscall"
	"unsafe"
)

// peekAlive reports whether an idle socket has nothing to read and is not
// closed: recv(MSG_PEEK|MSG_DONTWAIT) must fail with EAGAIN. EOF (the backend
// closed the connection), unsolicited data or an error mean it is unusable.
// The call never blocks, so it is made without telling the scheduler.
func peekAlive(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return true
		default:
			return false
		}
	}
}
