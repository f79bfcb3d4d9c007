package controller

import "time"

// WaitBackground waits up to timeout for the controller's background work
// (replica stops started by stopAsync) to end, and reports whether it did.
// Tests use it in cleanup, after cancelling the context they reconciled with.
func WaitBackground(c *Controller, timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
