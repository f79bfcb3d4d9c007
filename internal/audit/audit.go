// Package audit is aloft's tamper-evident audit log: every mutating API call
// and every denied call becomes a record, and each record carries the SHA-256
// of the previous record, so altering, removing or reordering any record
// breaks the chain at that point. Verify finds the first broken link.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aloft-dev/aloft/internal/store"
)

// Hash computes a record's hash from the previous record's hash and the
// record's own fields (everything but Hash), in a fixed canonical encoding.
func Hash(prevHash string, r store.AuditRecord) string {
	canon, _ := json.Marshal([]any{
		r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.TokenID, r.Workspace, r.Action, r.Object, r.Source, r.Result, prevHash,
	})
	h := sha256.New()
	h.Write([]byte("aloft-audit-v1\n"))
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// Problem describes the first record where the chain breaks.
type Problem struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

func (p *Problem) Error() string { return fmt.Sprintf("audit record %d: %s", p.Seq, p.Reason) }

// Verify recomputes the chain over records in stored order (the whole log,
// from seq 1). It returns nil when intact, or the first problem: a record
// whose content no longer matches its hash (altered), a gap in the sequence
// (removed), or a record that does not follow its predecessor (reordered or
// inserted).
func Verify(records []store.AuditRecord) *Problem {
	prev := ""
	var want int64 = 1
	for _, r := range records {
		switch {
		case r.Seq > want:
			return &Problem{Seq: want, Reason: fmt.Sprintf("missing: records %d..%d were removed", want, r.Seq-1)}
		case r.Seq < want:
			return &Problem{Seq: r.Seq, Reason: "out of order or duplicated"}
		case r.PrevHash != prev:
			return &Problem{Seq: r.Seq, Reason: "does not follow the previous record (reordered, inserted, or the previous record was removed)"}
		case Hash(r.PrevHash, r) != r.Hash:
			return &Problem{Seq: r.Seq, Reason: "altered: its content does not match its hash"}
		}
		prev = r.Hash
		want++
	}
	return nil
}
