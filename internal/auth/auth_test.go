package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSecretsAndParsing(t *testing.T) {
	s1, h1, err := NewSecret(TokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	s2, h2, _ := NewSecret(TokenPrefix)
	if s1 == s2 || h1 == h2 || !strings.HasPrefix(s1, "aloft_") || len(h1) != 64 {
		t.Fatalf("secrets not random or malformed: %s %s", s1, h1)
	}
	if HashSecret(s1) != h1 || !EqualHash(h1, HashSecret(s1)) || EqualHash(h1, h2) {
		t.Fatal("hash mismatch")
	}
	if got, err := ParseBearer("Bearer "+s1, TokenPrefix); err != nil || got != s1 {
		t.Fatalf("ParseBearer: %q %v", got, err)
	}
	if _, err := ParseBearer("bearer   "+s1+" ", TokenPrefix); err != nil {
		t.Errorf("case-insensitive scheme, trimmed: %v", err)
	}
	bad := []string{"", "Bearer", "Basic " + s1, "Bearer " + s1[:len(s1)-1], "Bearer " + s1 + "x",
		"Bearer aloftep_" + s1[6:], "Bearer " + s1[:10] + "!" + s1[11:], "Bearer " + strings.Repeat("a", 5000)}
	for _, h := range bad {
		_, err := ParseBearer(h, TokenPrefix)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseBearer(%.20q) = %v, want ErrMalformed", h, err)
		}
		if err != nil && len(h) > 12 && strings.Contains(err.Error(), h[7:]) {
			t.Errorf("error echoes the token: %v", err)
		}
	}
}

func TestAuthorize(t *testing.T) {
	read := Permission{Role: Viewer, Scoped: true}
	deploy := Permission{Role: Developer, Scoped: true}
	adminScoped := Permission{Role: Admin, Scoped: true}
	clouds := Permission{Role: Admin}
	cloudsRead := Permission{Role: Viewer}
	tests := []struct {
		c    Caller
		p    Permission
		ws   string
		want error
	}{
		{Caller{Role: Viewer, Workspace: "a"}, read, "a", nil},
		{Caller{Role: Viewer, Workspace: "a"}, read, "b", ErrForbiddenWorkspace},
		{Caller{Role: Viewer, Workspace: "a"}, deploy, "a", ErrForbiddenRole},
		{Caller{Role: Developer, Workspace: "a"}, deploy, "a", nil},
		{Caller{Role: Developer, Workspace: "a"}, adminScoped, "a", ErrForbiddenRole},
		{Caller{Role: Admin, Workspace: "a"}, adminScoped, "a", nil},
		{Caller{Role: Admin, Workspace: "a"}, adminScoped, "b", ErrForbiddenWorkspace},
		{Caller{Role: Admin, Workspace: "a"}, clouds, "", ErrForbiddenWorkspace},
		{Caller{Role: Admin, Workspace: AllWorkspaces}, clouds, "", nil},
		{Caller{Role: Admin, Workspace: AllWorkspaces}, deploy, "zzz", nil},
		{Caller{Role: Viewer, Workspace: "a"}, cloudsRead, "", nil},
		{Caller{Role: "", Workspace: AllWorkspaces}, read, "a", ErrForbiddenRole},
	}
	for i, tc := range tests {
		if err := Authorize(tc.c, tc.p, tc.ws); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%d: Authorize(%+v, %+v, %q) = %v, want %v", i, tc.c, tc.p, tc.ws, err, tc.want)
		}
	}
}

func TestParseRoleAndTTL(t *testing.T) {
	if r, err := ParseRole(" Developer "); err != nil || r != Developer {
		t.Errorf("ParseRole: %v %v", r, err)
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("root accepted")
	}
	for in, want := range map[string]time.Duration{"": 0, "0": 0, "12h": 12 * time.Hour, "30d": 720 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %v %v", in, got, err)
		}
	}
	for _, in := range []string{"-1h", "x", "1.5d", "0d", "d", "106752d", "3651d", "90000h"} {
		if _, err := ParseTTL(in); err == nil {
			t.Errorf("ParseTTL(%q) accepted", in)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(2, 3)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("k", now); !ok {
			t.Fatalf("request %d within burst refused", i)
		}
	}
	ok, wait := l.Allow("k", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over burst: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.Allow("other", now); !ok {
		t.Fatal("keys are not independent")
	}
	if ok, _ := l.Allow("k", now.Add(wait)); !ok {
		t.Fatal("not allowed after the advertised wait")
	}
	if RetryAfterSeconds(300*time.Millisecond) != 1 || RetryAfterSeconds(2100*time.Millisecond) != 3 {
		t.Fatal("RetryAfterSeconds rounding")
	}
}

func FuzzParseBearer(f *testing.F) {
	s, _, _ := NewSecret(TokenPrefix)
	for _, seed := range []string{"Bearer " + s, "", "Bearer ", "Basic abc", "Bearer aloft_!!!!", "bearer\t" + s} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := ParseBearer(h, TokenPrefix)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			return
		}
		if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+encodedLen {
			t.Fatalf("accepted a token of the wrong shape: %q", tok)
		}
		if _, err := ParseToken(tok, TokenPrefix); err != nil {
			t.Fatalf("accepted token does not re-parse: %v", err)
		}
	})
}
