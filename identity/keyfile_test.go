package identity

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.key")
	priv, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFiles(p, priv); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %#o", st.Mode().Perm())
	}
	text, _ := os.ReadFile(p)
	if !bytes.HasPrefix(text, []byte("-----BEGIN PEERD ED25519 PRIVATE KEY-----\nNode-ID: 12D3KooW")) {
		t.Fatalf("private key file:\n%s", text)
	}
	got, err := ReadPrivateKeyFile(p)
	if err != nil || !got.Equal(priv) {
		t.Fatalf("read private: %v", err)
	}
	for _, q := range []string{p + ".pub", p} {
		pub, err := ReadPublicKeyFile(q)
		if err != nil || !pub.Equal(priv.Public()) {
			t.Fatalf("read public from %s: %v", q, err)
		}
	}
	if err := WriteKeyFiles(p, priv); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("overwrite: %v", err)
	}
}

func TestKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	priv := testKey("k")
	privText, _ := MarshalPrivateKey(priv)
	pubText, _ := MarshalPublicKey(pubOf(priv))
	otherPub, _ := MarshalPublicKey(pubOf(testKey("other")))
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	wrongHeader := bytes.Replace(privText, []byte(NodeID(pubOf(priv))), []byte(NodeID(pubOf(testKey("other")))), 1)
	cases := []struct {
		name     string
		path     string
		private  bool
		sentinel error
		detail   string
	}{
		{"world-readable", write("open.key", privText, 0o644), true, ErrKeyPermissions, "chmod 600"},
		{"group-readable", write("group.key", privText, 0o640), true, ErrKeyPermissions, "mode 0640"},
		{"public given as private", write("pub.key", pubText, 0o600), true, ErrMalformed, "public key file"},
		{"garbage", write("garbage.key", []byte("not a key\n"), 0o600), true, ErrMalformed, "not a peerd key file"},
		{"garbage public", write("garbage.pub", []byte{0, 1, 2}, 0o644), false, ErrMalformed, "not a peerd key file"},
		{"RSA key", write("rsa.key", []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600), true, ErrMalformed, "unsupported key type"},
		{"short seed", write("short.key", armor(PrivateKeyBlockType, nil, make([]byte, 31)), 0o600), true, ErrMalformed, "31 bytes"},
		{"short public", write("short.pub", armor(PublicKeyBlockType, nil, make([]byte, 31)), 0o644), false, ErrMalformed, "31 bytes"},
		{"Node-ID mismatch", write("edited.key", wrongHeader, 0o600), true, ErrMalformed, "Node-ID header"},
		{"unknown header", write("hdr.pub", armor(PublicKeyBlockType, map[string]string{"X": "y"}, pubOf(priv)), 0o644), false, ErrMalformed, "unknown key file header"},
		{"two blocks", write("two.pub", append(append([]byte(nil), pubText...), otherPub...), 0o644), false, ErrMalformed, "after the key block"},
		{"too large", write("big.pub", make([]byte, maxKeyFileSize+1), 0o644), false, ErrMalformed, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.private {
				_, err = ReadPrivateKeyFile(c.path)
			} else {
				_, err = ReadPublicKeyFile(c.path)
			}
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, c.sentinel, c.detail)
			}
		})
	}
	if _, err := ReadPrivateKeyFile(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing: %v", err)
	}
	if _, err := ReadPrivateKeyFile(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory: %v", err)
	}
}
