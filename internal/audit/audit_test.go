package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aloft-dev/aloft/internal/store"
)

func chain(t *testing.T, n int) []store.AuditRecord {
	t.Helper()
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range n {
		if _, err := s.AppendAudit(ctx, store.AuditRecord{
			Time: time.Unix(int64(1000+i), 0), TokenID: "tok_1", Workspace: "default",
			Action: "deployment.apply", Object: fmt.Sprintf("deployment/d%d", i), Source: "127.0.0.1", Result: "allowed",
		}, Hash); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.ListAudit(ctx, store.AuditFilter{})
	if err != nil || len(recs) != n {
		t.Fatalf("list: %d %v", len(recs), err)
	}
	return recs
}

func TestVerify(t *testing.T) {
	good := chain(t, 6)
	if p := Verify(good); p != nil {
		t.Fatalf("intact chain: %v", p)
	}
	clone := func() []store.AuditRecord { return append([]store.AuditRecord(nil), good...) }

	altered := clone()
	altered[2].Result = "denied"
	removed := append(clone()[:3], good[4:]...)
	swapped := clone()
	swapped[3], swapped[4] = swapped[4], swapped[3]
	swapped[3].Seq, swapped[4].Seq = 4, 5
	rehashed := clone() // altered and re-hashed, but the next record still points at the old hash
	rehashed[1].Object = "deployment/evil"
	rehashed[1].Hash = Hash(rehashed[1].PrevHash, rehashed[1])
	firstRemoved := clone()[1:]

	tests := []struct {
		name   string
		recs   []store.AuditRecord
		seq    int64
		reason string
	}{
		{"altered", altered, 3, "altered"},
		{"removed", removed, 4, "removed"},
		{"reordered", swapped, 4, "does not follow"},
		{"altered and re-hashed", rehashed, 3, "does not follow"},
		{"first removed", firstRemoved, 1, "removed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Verify(tc.recs)
			if p == nil || p.Seq != tc.seq || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("Verify = %v, want seq %d %q", p, tc.seq, tc.reason)
			}
		})
	}
}
