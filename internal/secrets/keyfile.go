package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxKeyFileSize bounds what LoadKeyFile reads; a key file is ~45 bytes.
const maxKeyFileSize = 4096

// PendingSuffix is appended to a key file's path for the new key of a
// rotation in progress (see BeginRotation).
const PendingSuffix = ".new"

var (
	// ErrInsecureKeyFile: the key file is accessible by group or others.
	ErrInsecureKeyFile = errors.New("secrets: key file is accessible by group or others")
	// ErrNoRotation: CommitRotation found no pending key file.
	ErrNoRotation = errors.New("secrets: no key rotation in progress")
)

// LoadKeyFile reads a KEK stored as base64 in path. It refuses a file whose
// mode grants group or others any access (mode & 0o077 != 0), telling the
// operator to chmod 600 it, and anything but a regular file. Its errors never
// contain the file's content.
func LoadKeyFile(path string) (KEK, error) {
	f, err := os.Open(path)
	if err != nil {
		return KEK{}, fmt.Errorf("secrets: key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the checked file is the read one.
	fi, err := f.Stat()
	if err != nil {
		return KEK{}, fmt.Errorf("secrets: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return KEK{}, fmt.Errorf("secrets: key file %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return KEK{}, fmt.Errorf("%w: %s has mode %04o; run `chmod 600 %s`", ErrInsecureKeyFile, path, perm, path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer Zero(buf)
	if err != nil {
		return KEK{}, fmt.Errorf("secrets: reading key file %s: %w", path, err)
	}
	if len(buf) > maxKeyFileSize {
		return KEK{}, fmt.Errorf("%w: key file %s is larger than %d bytes", ErrInvalidKEK, path, maxKeyFileSize)
	}
	k, err := ParseKEK(string(buf))
	if err != nil {
		return KEK{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to path atomically: a temporary file (mode 0600) in
// the same directory is written, fsynced and renamed over path, and the
// directory is fsynced. A reader sees the old file or the new one, never a
// partial one. The parent directory is created (0700) if missing. An
// existing file at path is replaced.
func WriteKeyFile(path string, k KEK) error {
	return writeKeyFile(path, k, true)
}

// writeKeyFile is WriteKeyFile; with replace false it fails with an error
// wrapping fs.ErrExist rather than replace an existing file (by hard-linking
// the temporary file into place, which is atomic and exclusive).
func writeKeyFile(path string, k KEK, replace bool) (err error) {
	if !k.valid() {
		return fmt.Errorf("secrets: writing key file %s: %w", path, ErrNoKEK)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secrets: creating key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("secrets: writing key file: %w", err)
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		os.Remove(tmpName) // after a rename it is gone; after a link it is an extra name
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("secrets: writing key file: %w", err)
	}
	data := []byte(k.Encode() + "\n")
	defer Zero(data)
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("secrets: writing key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("secrets: writing key file: %w", err)
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return fmt.Errorf("secrets: writing key file: %w", err)
	}
	if replace {
		err = os.Rename(tmpName, path)
	} else {
		err = os.Link(tmpName, path)
	}
	if err != nil {
		return fmt.Errorf("secrets: writing key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("secrets: writing key file %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("secrets: key file: %w", err)
}

// Resolve builds the keyring the server uses.
//
//   - envValue (for example $ALOFT_SECRETS_KEY), if not blank, wins: it is a
//     base64 KEK, or several separated by commas, the first current and the
//     rest older (to rotate an environment-supplied key). source is
//     "environment".
//   - Otherwise keyFile is loaded. If keyFile+".new" exists (a rotation is in
//     progress or was interrupted), it is loaded too and becomes current, with
//     keyFile's key kept for opening. source is keyFile's path (and the
//     pending file's).
//   - If keyFile does not exist and create is true, a new key is generated and
//     written there (0600, exclusively: if another process created it first,
//     that key is loaded instead) and created is true so the caller can log
//     where the key is and that it must be backed up.
//
// Resolve refuses to create a key when keyFile is missing but keyFile.new
// exists: that is not a state aloft leaves behind, and a fresh key would hide
// the problem.
func Resolve(envValue, keyFile string, create bool) (kr *Keyring, source string, created bool, err error) {
	if strings.TrimSpace(envValue) != "" {
		kr, err := parseKeyList(envValue)
		if err != nil {
			return nil, "", false, err
		}
		return kr, "environment", false, nil
	}
	if keyFile == "" {
		return nil, "", false, fmt.Errorf("%w: no key given in the environment and no key file configured", ErrNoKEK)
	}
	pending := keyFile + PendingSuffix
	haveFile, err := exists(keyFile)
	if err != nil {
		return nil, "", false, err
	}
	havePending, err := exists(pending)
	if err != nil {
		return nil, "", false, err
	}
	if !haveFile {
		if havePending {
			return nil, "", false, fmt.Errorf("secrets: key file %s is missing but %s exists (interrupted rotation?); restore %s from backup, or if it was never needed, rename %s to %s",
				keyFile, pending, keyFile, pending, keyFile)
		}
		if !create {
			return nil, "", false, fmt.Errorf("secrets: key file %s: %w", keyFile, fs.ErrNotExist)
		}
		k, err := GenerateKEK()
		if err != nil {
			return nil, "", false, err
		}
		switch err := writeKeyFile(keyFile, k, false); {
		case err == nil:
			return NewKeyring(k), keyFile, true, nil
		case !errors.Is(err, fs.ErrExist):
			return nil, "", false, err
		}
		// Lost a race with another process creating it: use theirs.
	}
	old, err := LoadKeyFile(keyFile)
	if err != nil {
		return nil, "", false, err
	}
	if !havePending {
		return NewKeyring(old), keyFile, false, nil
	}
	next, err := LoadKeyFile(pending)
	if err != nil {
		// Secrets may already be sealed under the pending key: never ignore it.
		return nil, "", false, fmt.Errorf("secrets: rotation in progress: %w", err)
	}
	return NewKeyring(next, old), keyFile + " (rotating to " + pending + ")", false, nil
}

// parseKeyList parses comma-separated KEKs; errors name the position only.
func parseKeyList(v string) (*Keyring, error) {
	parts := strings.Split(v, ",")
	keys := make([]KEK, 0, len(parts))
	for i, p := range parts {
		k, err := ParseKEK(p)
		if err != nil {
			if len(parts) == 1 {
				return nil, fmt.Errorf("key from environment: %w", err)
			}
			return nil, fmt.Errorf("key %d of %d from environment: %w", i+1, len(parts), err)
		}
		keys = append(keys, k)
	}
	return NewKeyring(keys[0], keys[1:]...), nil
}

// BeginRotation starts rotating the KEK in keyFile: it generates a new key
// and writes it to keyFile+".new" (0600). From then on Resolve makes it
// current and keeps the old key for opening. If a rotation is already pending
// (keyFile.new exists, for example after a crash), BeginRotation does not
// replace it, since secrets may already be sealed under it: it returns that
// pending key, so re-running a rotation resumes it. keyFile must exist.
func BeginRotation(keyFile string) (newKEK KEK, err error) {
	if _, err := LoadKeyFile(keyFile); err != nil {
		return KEK{}, fmt.Errorf("secrets: begin rotation: %w", err)
	}
	pending := keyFile + PendingSuffix
	k, err := GenerateKEK()
	if err != nil {
		return KEK{}, err
	}
	err = writeKeyFile(pending, k, false)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return KEK{}, err
	}
	k, err = LoadKeyFile(pending)
	if err != nil {
		return KEK{}, fmt.Errorf("secrets: resuming rotation: %w", err)
	}
	return k, nil
}

// CommitRotation finishes a rotation by renaming keyFile.new over keyFile
// (atomically, then fsyncing the directory). Afterwards only the new key is
// loaded, so every stored secret must have been rewrapped first (see
// Keyring.NeedsRewrap); this package cannot check that. It returns an error
// wrapping ErrNoRotation if no rotation is pending.
func CommitRotation(keyFile string) error {
	pending := keyFile + PendingSuffix
	if ok, err := exists(pending); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: %s does not exist", ErrNoRotation, pending)
	}
	// Refuse to install a key that Resolve would then refuse to load.
	if _, err := LoadKeyFile(pending); err != nil {
		return fmt.Errorf("secrets: commit rotation: %w", err)
	}
	if err := os.Rename(pending, keyFile); err != nil {
		return fmt.Errorf("secrets: commit rotation: %w", err)
	}
	if err := syncDir(filepath.Dir(keyFile)); err != nil {
		return fmt.Errorf("secrets: commit rotation: %w", err)
	}
	return nil
}
