package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// GetMeta returns a copy of the value stored under key and whether it
// exists.
func (s *Store) GetMeta(key string) (value []byte, ok bool, err error) {
	if key == "" {
		return nil, false, errors.New("store: empty meta key")
	}
	err = s.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketUser).Get([]byte(key))
		if raw == nil {
			return nil
		}
		v, err := decodeMeta(key, raw)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		value, ok = append([]byte{}, v...), true
		return nil
	})
	return value, ok, err
}

// PutMeta durably stores value under key (its own transaction and fsync;
// meant for small, infrequent values such as counters).
func (s *Store) PutMeta(key string, value []byte) error {
	if key == "" {
		return errors.New("store: empty meta key")
	}
	if len(key) > bolt.MaxKeySize || len(value) > bolt.MaxValueSize-maxFrameHeader {
		return fmt.Errorf("store: meta %q too large", key)
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUser).Put([]byte(key), encodeMeta(value))
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("store: put meta %q: %w", key, err)
	}
	return err
}

// DeleteMeta durably removes key; a missing key is not an error.
func (s *Store) DeleteMeta(key string) error {
	if key == "" {
		return errors.New("store: empty meta key")
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUser).Delete([]byte(key))
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("store: delete meta %q: %w", key, err)
	}
	return err
}
