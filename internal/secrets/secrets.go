// Package secrets is envelope encryption for user secrets (API keys and the
// like that deployment specs reference) stored at rest in aloft's database.
//
// Each secret value is encrypted with AES-256-GCM under its own random 256-bit
// data key. The data key is wrapped, again with AES-256-GCM, by a
// key-encryption key (KEK). The database stores only a [Sealed]: the KEK's ID,
// the wrapped data key and the ciphertext. The KEK itself comes from a key
// file or an environment variable (see [Resolve]) and is never stored beside
// the data.
//
// Formats (both fields are nonce || ciphertext || tag, 12-byte random nonce,
// 16-byte tag):
//
//	WrappedKey = GCM(KEK,      nonce, dataKey,   ad = "aloft-secrets/v1/wrap\x00" || KEKID)   // 60 bytes
//	Ciphertext = GCM(dataKey,  nonce, plaintext, ad = "aloft-secrets/v1/data\x00" || aad)
//
// The caller's aad names the secret (for example "workspace/name"), so a
// sealed blob copied to another row fails to open. The wrapped key is not
// bound to aad, which is what lets [Keyring.Rewrap] re-wrap data keys during a
// KEK rotation without knowing the secrets' names; swapping wrapped keys
// between rows still fails, because the ciphertext is authenticated under its
// own data key.
//
// A [Keyring] is immutable after [NewKeyring] and safe for concurrent use.
//
// Rotation of a file-based KEK: [BeginRotation] writes KEYFILE.new; every
// [Resolve] from then on makes that key current and keeps the old one for
// opening; the operator rewraps every stored secret ([Keyring.Rewrap], or
// [Keyring.NeedsRewrap] to find them) and then calls [CommitRotation], which
// renames KEYFILE.new over KEYFILE. A crash at any point leaves a state that
// [Resolve] can open everything in.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"strings"
)

const (
	// KeySize is the size in bytes of a KEK and of every data key.
	KeySize = 32

	nonceSize = 12
	tagSize   = 16
	// WrappedKeySize is len(Sealed.WrappedKey): nonce, wrapped data key, tag.
	WrappedKeySize = nonceSize + KeySize + tagSize
	// minCiphertextSize is the size of an empty secret's Ciphertext.
	minCiphertextSize = nonceSize + tagSize

	idDomain   = "aloft-secrets/v1/kek-id\x00"
	wrapDomain = "aloft-secrets/v1/wrap\x00"
	dataDomain = "aloft-secrets/v1/data\x00"
)

var (
	// ErrUnknownKEK: the sealed secret names a KEK the keyring does not hold.
	ErrUnknownKEK = errors.New("secrets: unknown key-encryption key")
	// ErrDecrypt: a sealed secret failed authentication: it was tampered
	// with, truncated, opened under the wrong aad, or its KEK ID is wrong.
	ErrDecrypt = errors.New("secrets: decryption failed")
	// ErrInvalidKEK: an encoded KEK is not base64 of exactly 32 bytes.
	ErrInvalidKEK = errors.New("secrets: invalid key-encryption key")
	// ErrNoKEK: the keyring has no usable current KEK (nil keyring or zero KEK).
	ErrNoKEK = errors.New("secrets: no key-encryption key")
)

// KEK is a key-encryption key. ID identifies it (the first 16 hex characters
// of SHA-256 over a fixed domain prefix and the key) and is safe to log and
// store; the key bytes are unexported, and every way of printing or
// marshalling a KEK yields only "KEK(<id>)". Use [KEK.Encode] to get the key
// itself, for a key file.
type KEK struct {
	ID  string
	key [KeySize]byte
}

func kekID(key *[KeySize]byte) string {
	h := sha256.New()
	h.Write([]byte(idDomain))
	h.Write(key[:])
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func newKEK(key []byte) KEK {
	var k KEK
	copy(k.key[:], key)
	k.ID = kekID(&k.key)
	return k
}

// GenerateKEK returns a new random KEK.
func GenerateKEK() (KEK, error) {
	var b [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return KEK{}, fmt.Errorf("secrets: generating key: %w", err)
	}
	k := newKEK(b[:])
	Zero(b[:])
	return k, nil
}

// ParseKEK decodes a KEK from base64 (standard or URL alphabet, padded or
// not) of exactly 32 bytes, ignoring surrounding whitespace. Its errors wrap
// [ErrInvalidKEK] and never contain the input.
func ParseKEK(encoded string) (KEK, error) {
	s := strings.TrimSpace(encoded)
	if s == "" {
		return KEK{}, fmt.Errorf("%w: empty", ErrInvalidKEK)
	}
	var (
		b   []byte
		err error
	)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		// Deliberately not %w: base64.CorruptInputError is harmless, but keep
		// the message independent of the input.
		return KEK{}, fmt.Errorf("%w: not valid base64 (%d characters)", ErrInvalidKEK, len(s))
	}
	defer Zero(b)
	if len(b) != KeySize {
		return KEK{}, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrInvalidKEK, len(b), KeySize)
	}
	return newKEK(b), nil
}

// Encode returns the key as standard padded base64 (the key file format).
// This is the only method that reveals the key.
func (k KEK) Encode() string { return base64.StdEncoding.EncodeToString(k.key[:]) }

// valid reports whether k holds a key (not the zero KEK).
func (k KEK) valid() bool { return k.key != [KeySize]byte{} }

func (k KEK) String() string { return "KEK(" + k.ID + ")" }

// GoString keeps %#v from printing the key.
func (k KEK) GoString() string { return k.String() }

// Format makes every fmt verb (%v, %+v, %#v, %x, %d, ...) print only the ID.
func (k KEK) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalJSON marshals the KEK as the JSON string "KEK(<id>)".
func (k KEK) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// MarshalText is used by encoders (and as map keys) that prefer text.
func (k KEK) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// LogValue makes log/slog print only the ID.
func (k KEK) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Keyring holds the current KEK, which seals and rewraps, and older KEKs that
// are still needed to open secrets wrapped under them (during, or after an
// interrupted, rotation). It is immutable and safe for concurrent use.
type Keyring struct {
	current KEK
	older   []KEK          // in the order given, current and duplicates removed
	byID    map[string]KEK // every usable key, by recomputed ID
}

// NewKeyring returns a keyring whose current KEK is current and which can
// also unwrap data keys wrapped under any of older. IDs are recomputed from
// the keys, so a KEK whose ID field was altered is still found under its real
// ID. Zero KEKs are ignored; a keyring with a zero current KEK can still open
// but Seal and Rewrap return [ErrNoKEK].
func NewKeyring(current KEK, older ...KEK) *Keyring {
	r := &Keyring{byID: make(map[string]KEK, 1+len(older))}
	if current.valid() {
		current.ID = kekID(&current.key)
		r.current = current
		r.byID[current.ID] = current
	}
	for _, k := range older {
		if !k.valid() {
			continue
		}
		k.ID = kekID(&k.key)
		if _, dup := r.byID[k.ID]; dup {
			continue
		}
		r.byID[k.ID] = k
		r.older = append(r.older, k)
	}
	return r
}

// Current returns the KEK that Seal and Rewrap wrap data keys with.
func (r *Keyring) Current() KEK {
	if r == nil {
		return KEK{}
	}
	return r.current
}

// IDs returns the IDs of every KEK in the keyring, current first.
func (r *Keyring) IDs() []string {
	if r == nil {
		return nil
	}
	var ids []string
	if r.current.valid() {
		ids = append(ids, r.current.ID)
	}
	for _, k := range r.older {
		ids = append(ids, k.ID)
	}
	return ids
}

// Has reports whether the keyring can unwrap data keys wrapped under id.
func (r *Keyring) Has(id string) bool {
	if r == nil {
		return false
	}
	_, ok := r.byID[id]
	return ok
}

// NeedsRewrap reports whether s is wrapped under a KEK other than the current
// one, that is, whether a rotation still has to Rewrap it.
func (r *Keyring) NeedsRewrap(s Sealed) bool { return s.KEKID != r.Current().ID }

func (r Keyring) String() string {
	var b strings.Builder
	b.WriteString("Keyring(current=")
	b.WriteString(r.current.String())
	if len(r.older) > 0 {
		ids := make([]string, len(r.older))
		for i, k := range r.older {
			ids[i] = k.String()
		}
		sort.Strings(ids)
		b.WriteString(", older=[")
		b.WriteString(strings.Join(ids, " "))
		b.WriteString("]")
	}
	b.WriteString(")")
	return b.String()
}

// GoString keeps %#v from printing the keys.
func (r Keyring) GoString() string { return r.String() }

// Format makes every fmt verb print only IDs, for Keyring and *Keyring.
func (r Keyring) Format(f fmt.State, _ rune) { io.WriteString(f, r.String()) }

// MarshalJSON marshals the keyring as a description naming only IDs.
func (r Keyring) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// LogValue makes log/slog print only IDs.
func (r Keyring) LogValue() slog.Value { return slog.StringValue(r.String()) }

// Sealed is what the database stores for one secret. WrappedKey and
// Ciphertext each begin with their 12-byte GCM nonce. It marshals to JSON
// with base64 byte fields.
type Sealed struct {
	KEKID      string `json:"kek_id"`
	WrappedKey []byte `json:"wrapped_key"`
	Ciphertext []byte `json:"ciphertext"`
}

// String describes s by KEK ID and sizes only.
func (s Sealed) String() string {
	return fmt.Sprintf("Sealed(kek=%s, wrapped_key=%dB, ciphertext=%dB)", s.KEKID, len(s.WrappedKey), len(s.Ciphertext))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	// Random 96-bit nonce generated by crypto/rand and prepended to the
	// output; also the mode permitted under GODEBUG=fips140=only.
	return cipher.NewGCMWithRandomNonce(block)
}

func wrapAD(id string) []byte  { return append([]byte(wrapDomain), id...) }
func dataAD(aad []byte) []byte { return append([]byte(dataDomain), aad...) }

// Seal encrypts plaintext under a fresh random data key, wraps the data key
// with the current KEK, and binds the ciphertext to aad (the secret's
// identity, for example "workspace/name"); Open must be given the same aad.
func (r *Keyring) Seal(plaintext, aad []byte) (Sealed, error) {
	if r == nil || !r.current.valid() {
		return Sealed{}, ErrNoKEK
	}
	dataKey := make([]byte, KeySize)
	defer Zero(dataKey)
	if _, err := io.ReadFull(rand.Reader, dataKey); err != nil {
		return Sealed{}, fmt.Errorf("secrets: generating data key: %w", err)
	}
	dataAEAD, err := newGCM(dataKey)
	if err != nil {
		return Sealed{}, fmt.Errorf("secrets: %w", err)
	}
	ct := dataAEAD.Seal(nil, nil, plaintext, dataAD(aad))
	wrapped, err := r.wrap(dataKey)
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{KEKID: r.current.ID, WrappedKey: wrapped, Ciphertext: ct}, nil
}

func (r *Keyring) wrap(dataKey []byte) ([]byte, error) {
	kekAEAD, err := newGCM(r.current.key[:])
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return kekAEAD.Seal(nil, nil, dataKey, wrapAD(r.current.ID)), nil
}

// unwrap returns the data key of s; the caller must Zero it.
func (r *Keyring) unwrap(s Sealed) ([]byte, error) {
	if r == nil {
		return nil, ErrNoKEK
	}
	k, ok := r.byID[s.KEKID]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownKEK, quoteID(s.KEKID))
	}
	if len(s.WrappedKey) != WrappedKeySize {
		return nil, fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrDecrypt, len(s.WrappedKey), WrappedKeySize)
	}
	kekAEAD, err := newGCM(k.key[:])
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	dataKey, err := kekAEAD.Open(nil, nil, s.WrappedKey, wrapAD(k.ID))
	if err != nil || len(dataKey) != KeySize {
		Zero(dataKey)
		return nil, fmt.Errorf("%w: data key does not authenticate under KEK %s", ErrDecrypt, k.ID)
	}
	return dataKey, nil
}

// Open unwraps the data key of s with the KEK s names and decrypts the
// secret, which must have been sealed with the same aad. Errors wrap
// [ErrUnknownKEK] (naming the ID) or [ErrDecrypt] and never contain secret
// material. The caller may [Zero] the result when done with it.
func (r *Keyring) Open(s Sealed, aad []byte) ([]byte, error) {
	dataKey, err := r.unwrap(s)
	if err != nil {
		return nil, err
	}
	defer Zero(dataKey)
	if len(s.Ciphertext) < minCiphertextSize {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, want at least %d", ErrDecrypt, len(s.Ciphertext), minCiphertextSize)
	}
	dataAEAD, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	plaintext, err := dataAEAD.Open(nil, nil, s.Ciphertext, dataAD(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext does not authenticate (tampered, or opened under the wrong name)", ErrDecrypt)
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	return plaintext, nil
}

// Rewrap unwraps the data key of s with whatever KEK s names and wraps it
// with the current KEK. The ciphertext is copied unchanged (and is not
// authenticated: Rewrap does not know the secret's aad). Rewrapping a secret
// already under the current KEK is harmless (it gets a fresh wrap nonce).
func (r *Keyring) Rewrap(s Sealed) (Sealed, error) {
	if r == nil || !r.current.valid() {
		return Sealed{}, ErrNoKEK
	}
	dataKey, err := r.unwrap(s)
	if err != nil {
		return Sealed{}, err
	}
	defer Zero(dataKey)
	wrapped, err := r.wrap(dataKey)
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{KEKID: r.current.ID, WrappedKey: wrapped, Ciphertext: append([]byte(nil), s.Ciphertext...)}, nil
}

// quoteID renders an untrusted KEK ID from the database for an error message:
// quoted (no log injection) and bounded.
func quoteID(id string) string {
	const max = 64
	if len(id) > max {
		return fmt.Sprintf("%q... (%d bytes)", id[:max], len(id))
	}
	return fmt.Sprintf("%q", id)
}

// Zero overwrites b with zeros. Use it to wipe plaintext and key buffers once
// they are no longer needed; it cannot reach copies the runtime or other code
// has made (strings, garbage-collected old buffers).
func Zero(b []byte) {
	clear(b)
	runtime.KeepAlive(b)
}
