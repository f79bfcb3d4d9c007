package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aloft-dev/aloft/internal/provider"
)

// Logs implements provider.Provider. The stream is output.log.1 followed by
// output.log (the last opts.TailBytes of both if set). With opts.Follow it then
// waits for new output until ctx is done, the reader is closed, the replica
// is stopped or the provider closed. A stopped replica whose directory is
// still there can be read, without following.
func (p *Provider) Logs(ctx context.Context, id string, opts provider.LogOptions) (io.ReadCloser, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("%w: %v", provider.ErrNotFound, err)
	}
	p.mu.Lock()
	rep := p.replicas[id]
	p.mu.Unlock()
	dir := filepath.Join(p.opts.Dir, id)
	if rep != nil {
		dir = rep.dir
	} else if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w", id, provider.ErrNotFound)
	}

	lr := &logReader{
		p:       p,
		rep:     rep,
		ctx:     ctx,
		main:    filepath.Join(dir, logName),
		rotated: filepath.Join(dir, rotatedLogName),
		follow:  opts.Follow && rep != nil,
		closed:  make(chan struct{}),
	}
	if rep != nil {
		rep.logMu.RLock()
		lr.gen = rep.logGen
	}
	s1, s0 := fileSize(lr.rotated), fileSize(lr.main)
	if rep != nil {
		rep.logMu.RUnlock()
	}
	start := int64(0)
	if opts.TailBytes > 0 && s1+s0 > opts.TailBytes {
		start = s1 + s0 - opts.TailBytes
	}
	if start < s1 {
		lr.inRotated, lr.rotOff, lr.rotEnd = true, start, s1
	} else {
		lr.off = start - s1
	}
	return lr, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logReader reads a replica's log files on demand; it holds no descriptor
// and no goroutine between reads.
type logReader struct {
	p       *Provider
	rep     *replica // nil for a stopped replica
	ctx     context.Context
	main    string
	rotated string

	closeOnce sync.Once
	closed    chan struct{}

	mu        sync.Mutex // one Read at a time
	follow    bool
	inRotated bool  // reading output.log.1 from rotOff to rotEnd
	rotOff    int64 //
	rotEnd    int64 //
	off       int64 // offset in output.log
	gen       uint64
}

func (lr *logReader) Read(b []byte) (int, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if len(b) == 0 {
		return 0, nil
	}
	for {
		select {
		case <-lr.closed:
			return 0, os.ErrClosed
		default:
		}
		if lr.inRotated {
			if want := min(int64(len(b)), lr.rotEnd-lr.rotOff); want > 0 {
				n := readAt(lr.rotated, lr.rotOff, b[:want])
				if n > 0 {
					lr.rotOff += int64(n)
					return n, nil
				}
			}
			lr.inRotated = false
			continue
		}
		n, again := lr.readMain(b)
		if n > 0 {
			return n, nil
		}
		if again {
			continue
		}
		if !lr.follow {
			return 0, io.EOF
		}
		if !lr.wait() {
			return 0, io.EOF
		}
	}
}

// readMain reads output.log at lr.off. again reports that the file was
// rotated or truncated and the caller should read again.
func (lr *logReader) readMain(b []byte) (n int, again bool) {
	if lr.rep != nil {
		lr.rep.logMu.RLock()
		defer lr.rep.logMu.RUnlock()
		if lr.rep.logGen != lr.gen {
			// Rotated since the last read: what followed lr.off is now at the
			// same offset in output.log.1.
			lr.gen = lr.rep.logGen
			lr.inRotated, lr.rotOff, lr.rotEnd = true, lr.off, fileSize(lr.rotated)
			lr.off = 0
			return 0, true
		}
	}
	n = readAt(lr.main, lr.off, b)
	if n > 0 {
		lr.off += int64(n)
		return n, false
	}
	if fileSize(lr.main) < lr.off { // truncated behind our back
		lr.off = 0
		return 0, true
	}
	return 0, false
}

// wait blocks until it is time to look for new output (true), or following
// ended (false). When the replica is stopped or the provider closed, it
// returns true once more with follow off, so remaining output is drained.
func (lr *logReader) wait() bool {
	t := time.NewTimer(min(lr.p.opts.PollInterval, 250*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
	case <-lr.ctx.Done():
		return false
	case <-lr.closed:
		return false
	case <-lr.rep.gone:
		lr.follow = false
	case <-lr.p.closeCh:
		lr.follow = false
	}
	return true
}

func readAt(path string, off int64, b []byte) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, _ := f.ReadAt(b, off) // io.EOF (or any error) just ends this read
	return n
}

// Close ends the stream; a blocked Read returns.
func (lr *logReader) Close() error {
	lr.closeOnce.Do(func() { close(lr.closed) })
	return nil
}
