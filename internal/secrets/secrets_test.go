package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const planted = "PLANTED-sk-live-9f8e7d6c5b4a-do-not-leak"

func mustKEK(t testing.TB) KEK {
	t.Helper()
	k, err := GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSeal(t testing.TB, kr *Keyring, pt, aad string) Sealed {
	t.Helper()
	s, err := kr.Seal([]byte(pt), []byte(aad))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func clone(s Sealed) Sealed {
	return Sealed{KEKID: s.KEKID, WrappedKey: bytes.Clone(s.WrappedKey), Ciphertext: bytes.Clone(s.Ciphertext)}
}

// keyForms are the renderings of a KEK's key bytes that must never appear in
// output other than Encode.
func keyForms(k KEK) []string {
	return []string{
		k.Encode(),
		base64.RawURLEncoding.EncodeToString(k.key[:]),
		hex.EncodeToString(k.key[:]),
		fmt.Sprint(k.key[:]),
		fmt.Sprintf("%#v", k.key),
	}
}

func TestRoundTrip(t *testing.T) {
	kr := NewKeyring(mustKEK(t))
	for _, pt := range []string{"", "x", planted, strings.Repeat("long secret ", 10000)} {
		s := mustSeal(t, kr, pt, "ws/openai-key")
		if s.KEKID != kr.Current().ID || len(s.WrappedKey) != WrappedKeySize || len(s.Ciphertext) != len(pt)+minCiphertextSize {
			t.Fatalf("unexpected shape: %v", s)
		}
		// Through JSON, as the database stores it.
		j, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Sealed
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatal(err)
		}
		got, err := kr.Open(back, []byte("ws/openai-key"))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if string(got) != pt || got == nil {
			t.Fatalf("round trip: got %d bytes, want %d", len(got), len(pt))
		}
	}
}

func TestFreshDataKeyAndNonce(t *testing.T) {
	kr := NewKeyring(mustKEK(t))
	a := mustSeal(t, kr, planted, "ws/a")
	b := mustSeal(t, kr, planted, "ws/a")
	if bytes.Equal(a.Ciphertext, b.Ciphertext) {
		t.Fatal("same plaintext sealed twice gave the same ciphertext")
	}
	if bytes.Equal(a.Ciphertext[:nonceSize], b.Ciphertext[:nonceSize]) || bytes.Equal(a.WrappedKey[:nonceSize], b.WrappedKey[:nonceSize]) {
		t.Fatal("nonce reused")
	}
	ka, err := kr.unwrap(a)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := kr.unwrap(b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ka, kb) {
		t.Fatal("data key reused")
	}
	// Swapping wrapped keys between two secrets must not open either.
	a.WrappedKey, b.WrappedKey = b.WrappedKey, a.WrappedKey
	if _, err := kr.Open(a, []byte("ws/a")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("swapped wrapped key: %v", err)
	}
}

func TestWrongAAD(t *testing.T) {
	kr := NewKeyring(mustKEK(t))
	s := mustSeal(t, kr, planted, "team-a/openai")
	for _, aad := range []string{"team-b/openai", "team-a/openai2", "", "team-a/opena", "TEAM-A/openai"} {
		_, err := kr.Open(s, []byte(aad))
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("aad %q: err = %v, want ErrDecrypt", aad, err)
		}
	}
	// nil and empty aad are the same identity.
	s2 := mustSeal(t, kr, "v", "")
	if _, err := kr.Open(s2, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTamperEveryByte(t *testing.T) {
	kr := NewKeyring(mustKEK(t))
	aad := []byte("ws/name")
	s := mustSeal(t, kr, planted, string(aad))
	check := func(what string, m Sealed) {
		t.Helper()
		pt, err := kr.Open(m, aad)
		if !errors.Is(err, ErrDecrypt) || pt != nil {
			t.Fatalf("%s: pt=%d bytes err=%v, want ErrDecrypt", what, len(pt), err)
		}
		if strings.Contains(err.Error(), planted) {
			t.Fatalf("%s: error leaks plaintext", what)
		}
	}
	for i := range s.WrappedKey {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			m := clone(s)
			m.WrappedKey[i] ^= mask
			check(fmt.Sprintf("WrappedKey[%d]^%#x", i, mask), m)
		}
	}
	for i := range s.Ciphertext {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			m := clone(s)
			m.Ciphertext[i] ^= mask
			check(fmt.Sprintf("Ciphertext[%d]^%#x", i, mask), m)
		}
	}
	// Truncation and extension.
	for _, n := range []int{0, 1, nonceSize, len(s.WrappedKey) - 1} {
		m := clone(s)
		m.WrappedKey = m.WrappedKey[:n]
		check(fmt.Sprintf("WrappedKey[:%d]", n), m)
	}
	for _, n := range []int{0, 1, nonceSize, minCiphertextSize - 1, minCiphertextSize, len(s.Ciphertext) - 1} {
		m := clone(s)
		m.Ciphertext = m.Ciphertext[:n]
		check(fmt.Sprintf("Ciphertext[:%d]", n), m)
	}
	m := clone(s)
	m.WrappedKey = append(m.WrappedKey, 0)
	check("WrappedKey+1", m)
	m = clone(s)
	m.Ciphertext = append(m.Ciphertext, 0)
	check("Ciphertext+1", m)
	// The original still opens.
	if pt, err := kr.Open(s, aad); err != nil || string(pt) != planted {
		t.Fatalf("original: %v", err)
	}
}

func TestUnknownKEK(t *testing.T) {
	k1, k2 := mustKEK(t), mustKEK(t)
	s := mustSeal(t, NewKeyring(k1), planted, "ws/x")
	_, err := NewKeyring(k2).Open(s, []byte("ws/x"))
	if !errors.Is(err, ErrUnknownKEK) || !strings.Contains(err.Error(), k1.ID) {
		t.Fatalf("err = %v, want ErrUnknownKEK naming %s", err, k1.ID)
	}
	if _, err := NewKeyring(k2).Rewrap(s); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("rewrap: %v", err)
	}
	// A KEK ID rewritten to another key the keyring holds: ErrDecrypt.
	both := NewKeyring(k2, k1)
	m := clone(s)
	m.KEKID = k2.ID
	if _, err := both.Open(m, []byte("ws/x")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("relabelled: %v", err)
	}
	// A hostile ID is quoted and bounded in the message.
	m.KEKID = "evil\nid" + strings.Repeat("z", 500)
	_, err = both.Open(m, nil)
	if !errors.Is(err, ErrUnknownKEK) || strings.Contains(err.Error(), "\n") || len(err.Error()) > 200 {
		t.Fatalf("hostile id: %q", err)
	}
	// The zero keyring and the nil keyring fail cleanly.
	var nilKR *Keyring
	if _, err := nilKR.Open(s, nil); err == nil {
		t.Fatal("nil keyring opened")
	}
	if _, err := nilKR.Seal([]byte("x"), nil); !errors.Is(err, ErrNoKEK) {
		t.Fatal(err)
	}
	if _, err := NewKeyring(KEK{}).Seal([]byte("x"), nil); !errors.Is(err, ErrNoKEK) {
		t.Fatal(err)
	}
}

func TestRewrap(t *testing.T) {
	oldK, newK := mustKEK(t), mustKEK(t)
	oldOnly, newOnly, rotating := NewKeyring(oldK), NewKeyring(newK), NewKeyring(newK, oldK)
	aad := []byte("ws/db-password")
	s := mustSeal(t, oldOnly, planted, string(aad))
	if !rotating.NeedsRewrap(s) || oldOnly.NeedsRewrap(s) {
		t.Fatal("NeedsRewrap")
	}
	r, err := rotating.Rewrap(s)
	if err != nil {
		t.Fatal(err)
	}
	if r.KEKID != newK.ID || !bytes.Equal(r.Ciphertext, s.Ciphertext) || bytes.Equal(r.WrappedKey, s.WrappedKey) {
		t.Fatalf("rewrap: %v -> %v", s, r)
	}
	if rotating.NeedsRewrap(r) {
		t.Fatal("NeedsRewrap after rewrap")
	}
	if pt, err := newOnly.Open(r, aad); err != nil || string(pt) != planted {
		t.Fatalf("new-only keyring: %v", err)
	}
	if _, err := oldOnly.Open(r, aad); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("old-only keyring: %v", err)
	}
	// Rewrap does not alias the input's ciphertext.
	r.Ciphertext[0] ^= 1
	if _, err := oldOnly.Open(s, aad); err != nil {
		t.Fatal("rewrap aliased the ciphertext")
	}
	// Rewrapping under the current key is harmless.
	r2, err := newOnly.Rewrap(r)
	if err != nil || r2.KEKID != newK.ID {
		t.Fatal(err)
	}
}

func TestNoLeaks(t *testing.T) {
	k1, k2 := mustKEK(t), mustKEK(t)
	kr := NewKeyring(k2, k1)
	aad := []byte("ws/leak")
	s := mustSeal(t, kr, planted, string(aad))
	var forbidden []string
	forbidden = append(forbidden, planted)
	forbidden = append(forbidden, keyForms(k1)...)
	forbidden = append(forbidden, keyForms(k2)...)

	var outputs []string
	j, _ := json.Marshal(s)
	outputs = append(outputs, string(j))
	type holder struct {
		K  KEK
		KR *Keyring
		S  Sealed
	}
	for _, v := range []any{k1, &k1, *kr, kr, s, &s, holder{k1, kr, s}, []KEK{k1, k2}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
		jv, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json %T: %v", v, err)
		}
		outputs = append(outputs, string(jv))
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", v)
		outputs = append(outputs, buf.String())
	}
	if got := fmt.Sprintf("%#v", k1); got != "KEK("+k1.ID+")" {
		t.Errorf("%%#v of KEK = %q", got)
	}
	if got := string(must(json.Marshal(k1))); got != `"KEK(`+k1.ID+`)"` {
		t.Errorf("json of KEK = %s", got)
	}

	// Every error this package can produce about s.
	var errs []error
	collect := func(_ []byte, err error) { errs = append(errs, err) }
	collect(kr.Open(s, []byte("ws/other")))
	m := clone(s)
	m.Ciphertext[len(m.Ciphertext)-1] ^= 1
	collect(kr.Open(m, aad))
	m = clone(s)
	m.WrappedKey[20] ^= 1
	collect(kr.Open(m, aad))
	_, err := kr.Rewrap(m)
	errs = append(errs, err)
	collect(NewKeyring(mustKEK(t)).Open(s, aad))
	m = clone(s)
	m.KEKID = k1.ID
	collect(kr.Open(m, aad))
	_, err = ParseKEK(planted)
	errs = append(errs, err)
	for _, e := range errs {
		if e == nil {
			t.Fatal("expected an error")
		}
		outputs = append(outputs, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
	}

	for _, out := range outputs {
		for _, f := range forbidden {
			if strings.Contains(out, f) {
				t.Errorf("output leaks secret material %q: %s", f, out)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestParseKEK(t *testing.T) {
	k := mustKEK(t)
	raw := k.key[:]
	for _, enc := range []string{
		base64.StdEncoding.EncodeToString(raw),
		base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw),
		"  \n" + k.Encode() + "\r\n\t",
	} {
		got, err := ParseKEK(enc)
		if err != nil {
			t.Fatalf("ParseKEK(%q): %v", enc, err)
		}
		if got.ID != k.ID || got.key != k.key {
			t.Fatal("ParseKEK returned a different key")
		}
	}
	if k2, _ := ParseKEK(k.Encode()); k2.Encode() != k.Encode() {
		t.Fatal("Encode round trip")
	}
	if len(k.ID) != 16 || strings.Trim(k.ID, "0123456789abcdef") != "" {
		t.Fatalf("ID %q is not 16 hex chars", k.ID)
	}
	if k.ID == hex.EncodeToString(raw)[:16] {
		t.Fatal("ID is the key prefix")
	}
	secretish := "c2VjcmV0LXNlY3JldC1zZWNyZXQ" // base64 of 20 bytes
	for _, in := range []string{
		"",
		"   ",
		base64.StdEncoding.EncodeToString(make([]byte, 31)),
		base64.StdEncoding.EncodeToString(make([]byte, 33)),
		base64.StdEncoding.EncodeToString(make([]byte, 64)),
		secretish,
		"not base64 at all: " + planted,
		k.Encode()[:43] + "!",
		k.Encode() + k.Encode(),
		strings.Replace(k.Encode(), "=", "", 1) + "==",
	} {
		_, err := ParseKEK(in)
		if !errors.Is(err, ErrInvalidKEK) {
			t.Errorf("ParseKEK(%q) err = %v, want ErrInvalidKEK", in, err)
			continue
		}
		if s := strings.TrimSpace(in); len(s) > 3 && strings.Contains(err.Error(), s) || strings.Contains(err.Error(), planted) || strings.Contains(err.Error(), secretish) {
			t.Errorf("error echoes input: %v", err)
		}
	}
}

func TestKeyringIDs(t *testing.T) {
	k1, k2 := mustKEK(t), mustKEK(t)
	forged := k1
	forged.ID = "0000000000000000"
	kr := NewKeyring(k2, k1, forged, k2, KEK{})
	if ids := kr.IDs(); len(ids) != 2 || ids[0] != k2.ID || ids[1] != k1.ID {
		t.Fatalf("IDs = %v", ids)
	}
	if kr.Has("0000000000000000") || !kr.Has(k1.ID) {
		t.Fatal("Has")
	}
	// A KEK whose ID field was altered still seals under its real ID.
	s := mustSeal(t, NewKeyring(forged), "v", "a")
	if s.KEKID != k1.ID {
		t.Fatal("sealed under a forged ID")
	}
	if got := kr.String(); got != fmt.Sprintf("Keyring(current=KEK(%s), older=[KEK(%s)])", k2.ID, k1.ID) {
		t.Fatalf("String = %q", got)
	}
}

// writeMode writes a key file and forces its mode (umask-independent).
func writeMode(t *testing.T, path string, k KEK, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(k.Encode()+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	k := mustKEK(t)
	path := filepath.Join(dir, "secrets.key")
	writeMode(t, path, k, 0o600)
	got, err := LoadKeyFile(path)
	if err != nil || got.key != k.key {
		t.Fatalf("load: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o601, 0o666} {
		writeMode(t, path, k, mode)
		_, err := LoadKeyFile(path)
		if !errors.Is(err, ErrInsecureKeyFile) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: err = %v", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), k.Encode()) {
			t.Errorf("error leaks key")
		}
	}
	writeMode(t, path, k, 0o400)
	if _, err := LoadKeyFile(path); err != nil {
		t.Errorf("0400 should load: %v", err)
	}
	// Garbage content: error names the file, not the content.
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte(planted), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(bad); !errors.Is(err, ErrInvalidKEK) || strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad content: %v", err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := LoadKeyFile(dir); err == nil {
		t.Error("a directory loaded as a key file")
	}
	huge := filepath.Join(dir, "huge.key")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("A"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(huge); !errors.Is(err, ErrInvalidKEK) {
		t.Errorf("huge: %v", err)
	}
}

func TestWriteKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "keys")
	path := filepath.Join(dir, "secrets.key")
	k := mustKEK(t)
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil || di.Mode().Perm()&0o077 != 0 {
		t.Fatalf("created dir mode %v %v", di.Mode(), err)
	}
	got, err := LoadKeyFile(path)
	if err != nil || got.key != k.key {
		t.Fatalf("load back: %v", err)
	}
	if err := WriteKeyFile(path, KEK{}); !errors.Is(err, ErrNoKEK) {
		t.Fatalf("zero KEK written: %v", err)
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir has %d entries, want 1", len(entries))
	}
	// Exclusive variant refuses to replace.
	if err := writeKeyFile(path, mustKEK(t), false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("exclusive write over existing: %v", err)
	}
	if got, _ := LoadKeyFile(path); got.key != k.key {
		t.Fatal("exclusive write replaced the key")
	}
}

// TestWriteKeyFileConcurrentReaders replaces the key file repeatedly while
// readers load it: every read must see one complete key that was written.
func TestWriteKeyFileConcurrentReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	keys := make([]KEK, 200)
	valid := make(map[[KeySize]byte]bool, len(keys))
	for i := range keys {
		keys[i] = mustKEK(t)
		valid[keys[i].key] = true
	}
	if err := WriteKeyFile(path, keys[0]); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				k, err := LoadKeyFile(path)
				if err != nil {
					errc <- err
					return
				}
				if !valid[k.key] {
					errc <- errors.New("read a key that was never written")
					return
				}
				reads.Add(1)
			}
		}()
	}
	for _, k := range keys[1:] {
		if err := WriteKeyFile(path, k); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if got, _ := LoadKeyFile(path); got.key != keys[len(keys)-1].key {
		t.Fatal("last write lost")
	}
	t.Logf("%d concurrent reads", reads.Load())
}

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "secrets.key")
	envK, fileK := mustKEK(t), mustKEK(t)

	// No env, no file, create=false: error, nothing written.
	if _, _, _, err := Resolve("", path, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file without create: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("file created without create")
	}
	// Env wins even when the file is absent and create is true: nothing written.
	kr, src, created, err := Resolve(" "+envK.Encode()+"\n", path, true)
	if err != nil || created || src != "environment" || kr.Current().ID != envK.ID {
		t.Fatalf("env: %v %q %v %v", kr, src, created, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("env path wrote a key file")
	}
	// No env, create=true: generated and written.
	kr, src, created, err = Resolve("", path, true)
	if err != nil || !created || src != path {
		t.Fatalf("create: %v %q %v %v", kr, src, created, err)
	}
	generated := kr.Current()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated file: %v %v", fi, err)
	}
	// Second resolve loads the same key and does not create.
	kr, _, created, err = Resolve("", path, true)
	if err != nil || created || kr.Current().ID != generated.ID {
		t.Fatalf("reload: %v %v", created, err)
	}
	// File present: file used.
	if err := WriteKeyFile(path, fileK); err != nil {
		t.Fatal(err)
	}
	kr, src, created, err = Resolve("", path, false)
	if err != nil || created || src != path || kr.Current().ID != fileK.ID {
		t.Fatalf("file: %v %q %v", kr, src, err)
	}
	// Env beats an existing file.
	kr, _, _, err = Resolve(envK.Encode(), path, true)
	if err != nil || kr.Current().ID != envK.ID || kr.Has(fileK.ID) {
		t.Fatalf("env over file: %v %v", kr, err)
	}
	// Env with several keys: first current, the rest older.
	kr, _, _, err = Resolve(envK.Encode()+", "+fileK.Encode(), "", false)
	if err != nil || kr.Current().ID != envK.ID || !kr.Has(fileK.ID) {
		t.Fatalf("env list: %v %v", kr, err)
	}
	// Bad env: error that does not echo it.
	if _, _, _, err := Resolve(planted, path, true); !errors.Is(err, ErrInvalidKEK) || strings.Contains(err.Error(), planted) {
		t.Fatalf("bad env: %v", err)
	}
	if _, _, _, err := Resolve(envK.Encode()+","+planted, path, true); !errors.Is(err, ErrInvalidKEK) || strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), "key 2 of 2") {
		t.Fatalf("bad env list: %v", err)
	}
	// Insecure file: refused, not silently replaced.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Resolve("", path, true); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("insecure: %v", err)
	}
	if _, _, _, err := Resolve("", "", true); !errors.Is(err, ErrNoKEK) {
		t.Fatalf("nothing configured: %v", err)
	}
}

// TestResolveConcurrentCreate: servers racing to create the key file all end
// up with the same key.
func TestResolveConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	const n = 8
	ids := make([]string, n)
	var createdCount atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kr, _, created, err := Resolve("", path, true)
			if err != nil {
				t.Error(err)
				return
			}
			if created {
				createdCount.Add(1)
			}
			ids[i] = kr.Current().ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("racing creators got different keys: %v", ids)
		}
	}
	if createdCount.Load() != 1 {
		t.Fatalf("%d creators reported created", createdCount.Load())
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.key")
	if _, err := BeginRotation(path); err == nil {
		t.Fatal("BeginRotation without a key file")
	}
	if err := CommitRotation(path); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("commit with nothing pending: %v", err)
	}
	kr, _, _, err := Resolve("", path, true)
	if err != nil {
		t.Fatal(err)
	}
	oldK := kr.Current()
	sOld := mustSeal(t, kr, planted+"-old", "ws/old")
	sOld2 := mustSeal(t, kr, planted+"-old2", "ws/old2")

	newK, err := BeginRotation(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + ".new"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pending file: %v %v", fi, err)
	}
	// Crash here: restart resolves both keys, the new one current.
	kr, src, created, err := Resolve("", path, true)
	if err != nil || created || kr.Current().ID != newK.ID || !kr.Has(oldK.ID) {
		t.Fatalf("interrupted rotation: %v %v %v", kr, created, err)
	}
	if !strings.Contains(src, path+".new") {
		t.Errorf("source %q does not mention the pending file", src)
	}
	sNew := mustSeal(t, kr, planted+"-new", "ws/new")
	if sNew.KEKID != newK.ID {
		t.Fatal("sealed under the old key during rotation")
	}
	for _, c := range []struct {
		s       Sealed
		aad, pt string
	}{{sOld, "ws/old", planted + "-old"}, {sNew, "ws/new", planted + "-new"}} {
		if pt, err := kr.Open(c.s, []byte(c.aad)); err != nil || string(pt) != c.pt {
			t.Fatalf("open %s during rotation: %v", c.aad, err)
		}
	}
	// Re-running BeginRotation resumes: it must not replace the pending key,
	// which sNew is already sealed under.
	again, err := BeginRotation(path)
	if err != nil || again.ID != newK.ID {
		t.Fatalf("BeginRotation again: %v %v", again, err)
	}
	// Rewrap one old secret, then commit.
	sOldRewrapped, err := kr.Rewrap(sOld)
	if err != nil {
		t.Fatal(err)
	}
	if err := CommitRotation(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("pending file still present after commit")
	}
	kr, src, created, err = Resolve("", path, false)
	if err != nil || created || src != path {
		t.Fatalf("after commit: %v %q %v", kr, src, err)
	}
	if kr.Current().ID != newK.ID || kr.Has(oldK.ID) || len(kr.IDs()) != 1 {
		t.Fatalf("after commit keyring = %v", kr)
	}
	if pt, err := kr.Open(sNew, []byte("ws/new")); err != nil || string(pt) != planted+"-new" {
		t.Fatalf("new secret after commit: %v", err)
	}
	if pt, err := kr.Open(sOldRewrapped, []byte("ws/old")); err != nil || string(pt) != planted+"-old" {
		t.Fatalf("rewrapped secret after commit: %v", err)
	}
	if _, err := kr.Open(sOld2, []byte("ws/old2")); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("un-rewrapped secret after commit: %v", err)
	}
	if err := CommitRotation(path); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("second commit: %v", err)
	}
}

func TestResolveRotationEdgeCases(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.key")
	// Pending file without the main file: refuse, do not create.
	writeMode(t, path+".new", mustKEK(t), 0o600)
	if _, _, _, err := Resolve("", path, true); err == nil {
		t.Fatal("resolved with only the pending file")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("created a key file beside an orphan pending file")
	}
	// Insecure pending file: an error, never silently ignored.
	writeMode(t, path, mustKEK(t), 0o600)
	if err := os.Chmod(path+".new", 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Resolve("", path, false); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("insecure pending: %v", err)
	}
	if err := CommitRotation(path); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("commit of insecure pending: %v", err)
	}
}

// FuzzOpen feeds Open arbitrary sealed values. With raw set they are used as
// they are; otherwise they are applied to a valid seal as a tampering (an
// optional replacement KEK ID, truncations, and XOR deltas whose excess
// bytes are appended). Open must never panic, must fail only with
// ErrUnknownKEK or ErrDecrypt without leaking the plaintext, and must succeed
// only on an input identical to a valid seal.
func FuzzOpen(f *testing.F) {
	older, current := mustKEK(f), mustKEK(f)
	kr := NewKeyring(current, older)
	type ref struct {
		s   Sealed
		aad []byte
		pt  string
	}
	refs := []ref{
		{mustSeal(f, NewKeyring(current), planted, "ws/a"), []byte("ws/a"), planted},
		{mustSeal(f, NewKeyring(older), planted+"-older", "ws/b"), []byte("ws/b"), planted + "-older"},
		{mustSeal(f, NewKeyring(current), "", ""), nil, ""},
	}
	f.Add(false, uint8(0), "", []byte{}, uint8(0), []byte{}, uint8(0), []byte{})
	f.Add(false, uint8(1), "", []byte{}, uint8(0), []byte{}, uint8(0), []byte{})
	f.Add(false, uint8(0), "", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(0), []byte{}, uint8(0), []byte{})
	f.Add(false, uint8(0), "", []byte{}, uint8(1), []byte{}, uint8(0), []byte{})
	f.Add(false, uint8(0), "", []byte{}, uint8(0), []byte{}, uint8(0), []byte{1})
	f.Add(false, uint8(2), "", []byte{}, uint8(0), []byte{}, uint8(0), []byte("ws"))
	f.Add(false, uint8(2), older.ID, []byte{}, uint8(0), []byte{}, uint8(0), []byte{})
	f.Add(false, uint8(1), "", []byte{}, uint8(0), []byte("x"), uint8(16), []byte{})
	f.Add(true, uint8(0), current.ID, refs[0].s.WrappedKey, uint8(0), refs[0].s.Ciphertext, uint8(0), []byte("ws/a"))
	f.Add(true, uint8(0), "", []byte{}, uint8(0), []byte{}, uint8(0), []byte{})

	f.Fuzz(func(t *testing.T, raw bool, which uint8, kekID string, wrapped []byte, wrappedCut uint8, ct []byte, ctCut uint8, aad []byte) {
		var s Sealed
		var openAAD []byte
		if raw {
			s = Sealed{KEKID: kekID, WrappedKey: wrapped, Ciphertext: ct}
			openAAD = aad
		} else {
			r := refs[int(which)%len(refs)]
			s = clone(r.s)
			if kekID != "" {
				s.KEKID = kekID
			}
			s.WrappedKey = applyDelta(s.WrappedKey, wrappedCut, wrapped)
			s.Ciphertext = applyDelta(s.Ciphertext, ctCut, ct)
			openAAD = applyDelta(bytes.Clone(r.aad), 0, aad)
		}
		pt, err := kr.Open(s, openAAD)
		if err == nil {
			for _, r := range refs {
				if s.KEKID == r.s.KEKID && bytes.Equal(s.WrappedKey, r.s.WrappedKey) &&
					bytes.Equal(s.Ciphertext, r.s.Ciphertext) && bytes.Equal(openAAD, r.aad) {
					if string(pt) != r.pt {
						t.Fatalf("valid seal opened to the wrong plaintext")
					}
					return
				}
			}
			t.Fatalf("Open accepted a tampered or forged seal: %v aad=%q", s, openAAD)
		}
		if pt != nil {
			t.Fatal("plaintext returned with an error")
		}
		if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrUnknownKEK) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if strings.Contains(err.Error(), planted) {
			t.Fatalf("error leaks plaintext: %v", err)
		}
		// Rewrap must not panic either, and agree with Open on the key part.
		if _, rerr := kr.Rewrap(s); rerr == nil && errors.Is(err, ErrUnknownKEK) {
			t.Fatal("Rewrap unwrapped what Open could not find")
		}
	})
}

// applyDelta truncates b by cut bytes, then XORs delta into it, appending
// the part of delta beyond its length.
func applyDelta(b []byte, cut uint8, delta []byte) []byte {
	n := max(len(b)-int(cut), 0)
	out := append([]byte(nil), b[:n]...)
	for i, d := range delta {
		if i < len(out) {
			out[i] ^= d
		} else {
			out = append(out, d)
		}
	}
	return out
}
