package gossip

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// The gossip keyring: the keys memberlist decrypts with (the primary one
// also encrypts), changed cluster-wide by serf's KeyManager, which sends an
// internal query to every member and counts the answers. Each member
// persists its keyring in a file (Consul's <data-dir>/serf/local.keyring)
// so that a restarted member keeps the keys installed while it ran.

// KeyringFileName is the keyring file's name next to Config.SnapshotPath.
const KeyringFileName = "local.keyring"

// maxKeyringFile bounds what loadKeyringFile reads.
const maxKeyringFile = 1 << 20

// KeyringResult is what the members answered to a keyring operation.
type KeyringResult struct {
	// Keys counts, per base64 key, the members that hold it (ListKeys).
	Keys map[string]int
	// PrimaryKeys counts, per base64 key, the members that encrypt with
	// it (ListKeys).
	PrimaryKeys map[string]int
	// NumNodes is the number of members memberlist knew of when the query
	// was sent; NumResp how many answered.
	NumNodes int
	NumResp  int
	// Messages holds, per node name, the error (or warning) a member
	// answered; NumErr counts the errors.
	Messages map[string]string
	NumErr   int
	// Error is serf's summary when the operation did not succeed on every
	// member ("1/3 nodes reported failure", "2/3 nodes reported success"),
	// or why it could not be sent; empty on success.
	Error string
}

// ErrKeyring is wrapped by the error of a keyring operation that did not
// succeed on every member.
var ErrKeyring = errors.New("gossip: keyring operation failed")

// ListKeys asks every member for its keys. relay is serf's relay factor
// (0–5): how many other members relay each answer as well.
func (m *Membership) ListKeys(relay uint8) (KeyringResult, error) {
	return keyringResult(m.serf.KeyManager().ListKeysWithOptions(&serf.KeyRequestOptions{RelayFactor: relay}))
}

// InstallKey adds key (base64 of 16, 24 or 32 bytes) to every member's
// keyring; members decrypt with it from then on, and still encrypt with
// their primary key.
func (m *Membership) InstallKey(key string, relay uint8) (KeyringResult, error) {
	return keyringResult(m.serf.KeyManager().InstallKeyWithOptions(key, &serf.KeyRequestOptions{RelayFactor: relay}))
}

// UseKey makes an installed key the primary one (the one that encrypts) on
// every member.
func (m *Membership) UseKey(key string, relay uint8) (KeyringResult, error) {
	return keyringResult(m.serf.KeyManager().UseKeyWithOptions(key, &serf.KeyRequestOptions{RelayFactor: relay}))
}

// RemoveKey removes a key from every member's keyring. Members refuse to
// remove their primary key.
func (m *Membership) RemoveKey(key string, relay uint8) (KeyringResult, error) {
	return keyringResult(m.serf.KeyManager().RemoveKeyWithOptions(key, &serf.KeyRequestOptions{RelayFactor: relay}))
}

// EncryptionEnabled reports whether this member encrypts gossip (it has a
// keyring with at least one key).
func (m *Membership) EncryptionEnabled() bool { return m.serf.EncryptionEnabled() }

// LocalKeys returns this member's keys, base64, the primary first; nil
// when encryption is off.
func (m *Membership) LocalKeys() []string {
	kr := m.keyring
	if kr == nil {
		return nil
	}
	primary := kr.GetPrimaryKey()
	out := []string{base64.StdEncoding.EncodeToString(primary)}
	for _, k := range kr.GetKeys() {
		if !bytes.Equal(k, primary) {
			out = append(out, base64.StdEncoding.EncodeToString(k))
		}
	}
	return out
}

func keyringResult(r *serf.KeyResponse, err error) (KeyringResult, error) {
	var out KeyringResult
	if r != nil {
		out = KeyringResult{
			Keys:        r.Keys,
			PrimaryKeys: r.PrimaryKeys,
			NumNodes:    r.NumNodes,
			NumResp:     r.NumResp,
			Messages:    r.Messages,
			NumErr:      r.NumErr,
		}
	}
	if err != nil {
		out.Error = err.Error()
		return out, fmt.Errorf("%w: %v", ErrKeyring, err)
	}
	return out, nil
}

// keyringPath is where the keyring is persisted: Config.KeyringFile, else
// KeyringFileName next to the snapshot, else nowhere.
func (cfg *Config) keyringPath() string {
	switch {
	case cfg.KeyringFile != "":
		return cfg.KeyringFile
	case cfg.SnapshotPath != "":
		return filepath.Join(filepath.Dir(cfg.SnapshotPath), KeyringFileName)
	}
	return ""
}

// setupKeyring prepares sc's keyring from the keyring file, as Consul's
// agent does: a keyring file present at start wins over Config.SecretKey
// (it holds the keys installed and used since); without one, SecretKey
// starts a new keyring file. Either way serf rewrites the file after each
// install, use and remove.
func setupKeyring(cfg *Config, sc *serf.Config, logger *slog.Logger) error {
	path := cfg.keyringPath()
	if path == "" {
		return nil
	}
	mc := sc.MemberlistConfig
	b, err := readKeyringFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if len(cfg.SecretKey) == 0 {
			return nil // encryption off
		}
		if err := writeKeyringFile(path, [][]byte{cfg.SecretKey}); err != nil {
			return err
		}
		sc.KeyringFile = path
		return nil
	case err != nil:
		return err
	}
	keys, err := parseKeyring(b)
	if err != nil {
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	kr, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	mc.Keyring = kr
	// memberlist would add SecretKey to the keyring and make it primary.
	mc.SecretKey = nil
	sc.KeyringFile = path
	switch {
	case len(cfg.SecretKey) == 0:
		logger.Info("gossip encryption enabled by the keyring file", "file", path, "keys", len(keys))
	case !holdsKey(keys, cfg.SecretKey):
		logger.Warn("the keyring file does not hold the configured encrypt key; using the keyring file", "file", path, "keys", len(keys))
	case !bytes.Equal(keys[0], cfg.SecretKey):
		logger.Info("using the keyring file, whose primary key is not the configured encrypt key", "file", path, "keys", len(keys))
	default:
		logger.Info("using the keyring file", "file", path, "keys", len(keys))
	}
	return nil
}

func holdsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

func readKeyringFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("gossip: keyring file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring file: %w", err)
	}
	if len(b) > maxKeyringFile {
		return nil, fmt.Errorf("gossip: keyring file %s: larger than %d bytes", path, maxKeyringFile)
	}
	return b, nil
}

// parseKeyring decodes a keyring file: a JSON array of base64 keys of 16,
// 24 or 32 bytes, the primary first (the format serf writes).
func parseKeyring(b []byte) ([][]byte, error) {
	var enc []string
	if err := json.Unmarshal(b, &enc); err != nil {
		return nil, fmt.Errorf("not a JSON array of base64 keys: %w", err)
	}
	if len(enc) == 0 {
		return nil, errors.New("no keys")
	}
	keys := make([][]byte, 0, len(enc))
	for i, s := range enc {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("key %d: not base64: %w", i, err)
		}
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// writeKeyringFile writes keys in serf's format, atomically.
func writeKeyringFile(path string, keys [][]byte) error {
	enc := make([]string, len(keys))
	for i, k := range keys {
		enc[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, err := json.MarshalIndent(enc, "", "  ")
	if err != nil {
		return fmt.Errorf("gossip: keyring file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("gossip: keyring file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("gossip: keyring file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("gossip: keyring file: %w", err)
	}
	return nil
}
