package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// Key file block types. A private key file holds the 32-byte Ed25519 seed;
// a public key file holds the 32-byte public key. Both carry a "Node-ID"
// header line so that a human can tell which node a file belongs to; when
// present it must match the key.
const (
	PrivateKeyBlockType = "PEERD ED25519 PRIVATE KEY"
	PublicKeyBlockType  = "PEERD ED25519 PUBLIC KEY"
	nodeIDHeader        = "Node-ID"
	maxKeyFileSize      = 16 << 10
)

// GenerateKey returns a new Ed25519 private key drawn from r
// (crypto/rand.Reader when r is nil).
func GenerateKey(r io.Reader) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey returns the text form of a private key file.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errorf(ErrInvalid, "private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return armor(PrivateKeyBlockType, map[string]string{nodeIDHeader: NodeID(pub)}, priv.Seed()), nil
}

// MarshalPublicKey returns the text form of a public key file.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errorf(ErrInvalid, "public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return armor(PublicKeyBlockType, map[string]string{nodeIDHeader: NodeID(pub)}, pub), nil
}

// WriteKeyFiles writes priv to path (mode 0600) and its public key to
// path+".pub" (mode 0644). It refuses to overwrite existing files.
func WriteKeyFiles(path string, priv ed25519.PrivateKey) error {
	privText, err := MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	pubText, err := MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("identity: %s already exists; refusing to overwrite a key file", p)
		}
	}
	if err := writeNew(path, privText, 0o600); err != nil {
		return err
	}
	if err := writeNew(path+".pub", pubText, 0o644); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// writeNew creates path exclusively with mode perm and writes data.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	// The umask can only narrow perm; set it exactly anyway.
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	return nil
}

// ReadPrivateKeyFile reads a private key file written by WriteKeyFiles. It
// refuses a file that group or others may read (ErrKeyPermissions).
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("identity: %s is a directory, not a key file", path)
	}
	text, err := readBounded(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	priv, err := ParsePrivateKey(text)
	if err != nil {
		return nil, wrap(err, "%s", path)
	}
	// Checked after parsing so that a wrong file (a public key, a chain) is
	// reported as such rather than as a permission problem.
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("identity: %s is a private key with mode %#o, readable by others; run 'chmod 600 %s': %w", path, perm, path, ErrKeyPermissions)
	}
	return priv, nil
}

// ReadPublicKeyFile reads a public key file, or the public half of a private
// key file.
func ReadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	text, err := readBounded(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(text)
	if err != nil {
		return nil, wrap(err, "%s", path)
	}
	return pub, nil
}

// ParsePrivateKey parses the text of a private key file.
func ParsePrivateKey(text []byte) (ed25519.PrivateKey, error) {
	blk, err := parseKeyBlock(text)
	if err != nil {
		return nil, err
	}
	switch blk.Type {
	case PrivateKeyBlockType:
	case PublicKeyBlockType:
		return nil, errorf(ErrMalformed, "this is a public key file; a private key is needed")
	}
	if len(blk.Bytes) != ed25519.SeedSize {
		return nil, errorf(ErrMalformed, "private key holds %d bytes, want a %d-byte Ed25519 seed", len(blk.Bytes), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(blk.Bytes)
	if err := checkNodeIDHeader(blk, priv.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	return priv, nil
}

// ParsePublicKey parses the text of a public or a private key file and
// returns the public key.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	blk, err := parseKeyBlock(text)
	if err != nil {
		return nil, err
	}
	if blk.Type == PrivateKeyBlockType {
		priv, err := ParsePrivateKey(text)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	if len(blk.Bytes) != ed25519.PublicKeySize {
		return nil, errorf(ErrMalformed, "public key holds %d bytes, want %d", len(blk.Bytes), ed25519.PublicKeySize)
	}
	pub := ed25519.PublicKey(bytes.Clone(blk.Bytes))
	if err := checkNodeIDHeader(blk, pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func parseKeyBlock(text []byte) (*pem.Block, error) {
	if len(text) > maxKeyFileSize {
		return nil, errorf(ErrMalformed, "key file is larger than %d bytes", maxKeyFileSize)
	}
	blk, rest := pem.Decode(text)
	if blk == nil {
		return nil, errorf(ErrMalformed, "not a peerd key file (no %q line)", "-----BEGIN "+PrivateKeyBlockType+"-----")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errorf(ErrMalformed, "unexpected data after the key block")
	}
	switch blk.Type {
	case PrivateKeyBlockType, PublicKeyBlockType:
	default:
		hint := ""
		if strings.Contains(blk.Type, "RSA") || strings.Contains(blk.Type, "EC ") || blk.Type == "PRIVATE KEY" || blk.Type == "PUBLIC KEY" {
			hint = " (peerd uses its own Ed25519 key files; create one with 'peerd keygen')"
		}
		return nil, errorf(ErrMalformed, "unsupported key type %q, want %q or %q%s", blk.Type, PrivateKeyBlockType, PublicKeyBlockType, hint)
	}
	for k := range blk.Headers {
		if k != nodeIDHeader {
			return nil, errorf(ErrMalformed, "unknown key file header %q", k)
		}
	}
	return blk, nil
}

func checkNodeIDHeader(blk *pem.Block, pub ed25519.PublicKey) error {
	if id, ok := blk.Headers[nodeIDHeader]; ok && id != NodeID(pub) {
		return errorf(ErrMalformed, "key does not match its Node-ID header %q (file corrupted or edited)", id)
	}
	return nil
}

// readBounded reads at most max bytes of path; a larger file is an error.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("identity: %w", err)
		}
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, errorf(ErrMalformed, "%s is larger than %d bytes", path, max)
	}
	return b, nil
}
