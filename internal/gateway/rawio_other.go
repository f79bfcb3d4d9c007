//go:build !linux

package gateway

import "net"

// rawIO is only implemented on Linux; elsewhere connections are used as is.
type rawIO struct{ net.Conn }

func newRawIO(c net.Conn) *rawIO { return nil }
