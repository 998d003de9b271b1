package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk layout (format version 1). One bbolt file holds four buckets:
//
//	"meta"  internal keys: "format" -> uvarint format version (currently 1)
//	"log"   key: 8-byte big-endian Seq; value: a record frame (kind 0x01)
//	        the bucket's bbolt sequence is the last Seq ever assigned, so Seqs
//	        never repeat even after the log is truncated to empty
//	"snap"  key "state": a snapshot frame (kind 0x02), absent before the
//	        first SaveSnapshot
//	"user"  GetMeta/PutMeta: key as given, value a meta frame (kind 0x03)
//
// A frame is
//
//	kind   1 byte      0x01 record, 0x02 snapshot, 0x03 meta value
//	length uvarint     length of body
//	crc    4 bytes BE  CRC-32C of (kind, 8-byte BE id, body)
//	body   length bytes
//
// For a record, id is the record's Seq (its key), so a value that ends up
// under the wrong key fails its checksum; body is the record as appended.
// For a snapshot, id is 0 and body is the 8-byte BE upTo followed by the
// state bytes. For a meta value, id is 0 and body is the value. bbolt checksums only its meta pages, so the frame checksum is
// what turns a damaged value into a clear error instead of a silent replay of
// garbage.

// formatVersion is the on-disk format this build writes and reads.
const formatVersion = 1

const (
	kindRecord   byte = 0x01
	kindSnapshot byte = 0x02
	kindMeta     byte = 0x03
)

var (
	bucketMeta = []byte("meta")
	bucketLog  = []byte("log")
	bucketSnap = []byte("snap")
	bucketUser = []byte("user")

	keyFormat = []byte("format")
	keyState  = []byte("state")
)

// ErrCorrupt is wrapped by every error about a damaged or truncated value.
// Like ErrUnsupportedFormat it carries no "store:" prefix because it is
// always returned wrapped in one.
var ErrCorrupt = errors.New("corrupt data")

// ErrUnsupportedFormat is wrapped when the file was written by a format
// version this build does not read.
var ErrUnsupportedFormat = errors.New("unsupported on-disk format")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxFrameHeader is kind + longest uvarint + crc.
const maxFrameHeader = 1 + binary.MaxVarintLen64 + 4

func frameChecksum(kind byte, id uint64, body []byte) uint32 {
	var hdr [9]byte
	hdr[0] = kind
	binary.BigEndian.PutUint64(hdr[1:], id)
	c := crc32.Update(0, castagnoli, hdr[:])
	return crc32.Update(c, castagnoli, body)
}

// appendFrame appends the frame of body to dst and returns the result.
func appendFrame(dst []byte, kind byte, id uint64, body []byte) []byte {
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	dst = binary.BigEndian.AppendUint32(dst, frameChecksum(kind, id, body))
	return append(dst, body...)
}

// decodeFrame checks a frame of the given kind and id and returns its body,
// which aliases b.
func decodeFrame(b []byte, kind byte, id uint64) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty value", ErrCorrupt)
	}
	if b[0] != kind {
		return nil, fmt.Errorf("%w: frame kind 0x%02x, want 0x%02x", ErrCorrupt, b[0], kind)
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || w != uvarintLen(n) {
		return nil, fmt.Errorf("%w: bad frame length encoding", ErrCorrupt)
	}
	rest := b[1+w:]
	if len(rest) < 4 {
		return nil, fmt.Errorf("%w: truncated frame header", ErrCorrupt)
	}
	sum := binary.BigEndian.Uint32(rest)
	body := rest[4:]
	if n != uint64(len(body)) {
		return nil, fmt.Errorf("%w: frame says %d bytes, has %d (truncated or padded)", ErrCorrupt, n, len(body))
	}
	if got := frameChecksum(kind, id, body); got != sum {
		return nil, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, sum, got)
	}
	return body, nil
}

// uvarintLen is the size of the shortest uvarint encoding of n; frames
// accept only that one, so each value has exactly one valid encoding.
func uvarintLen(n uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], n)
}

// encodeRecord frames one log record stored under seq.
func encodeRecord(seq Seq, rec []byte) []byte {
	return appendFrame(make([]byte, 0, maxFrameHeader+len(rec)), kindRecord, uint64(seq), rec)
}

// decodeRecord returns the record stored under seq; it aliases b.
func decodeRecord(seq Seq, b []byte) ([]byte, error) {
	rec, err := decodeFrame(b, kindRecord, uint64(seq))
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", seq, err)
	}
	return rec, nil
}

// encodeSnapshot frames a snapshot covering every record up to upTo. It
// builds the frame in one allocation: snapshots can be large.
func encodeSnapshot(state []byte, upTo Seq) []byte {
	var up [8]byte
	binary.BigEndian.PutUint64(up[:], uint64(upTo))
	var hdr [9]byte
	hdr[0] = kindSnapshot // id 0: hdr[1:] stays zero
	sum := crc32.Update(0, castagnoli, hdr[:])
	sum = crc32.Update(sum, castagnoli, up[:])
	sum = crc32.Update(sum, castagnoli, state)
	out := make([]byte, 0, maxFrameHeader+8+len(state))
	out = append(out, kindSnapshot)
	out = binary.AppendUvarint(out, uint64(8+len(state)))
	out = binary.BigEndian.AppendUint32(out, sum)
	out = append(out, up[:]...)
	return append(out, state...)
}

// decodeSnapshot returns the state (aliasing b) and the Seq it covers.
func decodeSnapshot(b []byte) (state []byte, upTo Seq, err error) {
	body, err := decodeFrame(b, kindSnapshot, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	if len(body) < 8 {
		return nil, 0, fmt.Errorf("snapshot: %w: body of %d bytes has no upTo", ErrCorrupt, len(body))
	}
	return body[8:], Seq(binary.BigEndian.Uint64(body)), nil
}

// encodeMeta and decodeMeta frame a GetMeta/PutMeta value.
func encodeMeta(v []byte) []byte {
	return appendFrame(make([]byte, 0, maxFrameHeader+len(v)), kindMeta, 0, v)
}

func decodeMeta(key string, b []byte) ([]byte, error) {
	v, err := decodeFrame(b, kindMeta, 0)
	if err != nil {
		return nil, fmt.Errorf("meta %q: %w", key, err)
	}
	return v, nil
}

func seqKey(s Seq) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(s))
	return k[:]
}

func keySeq(k []byte) (Seq, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
	}
	return Seq(binary.BigEndian.Uint64(k)), nil
}

// encodeFormat and decodeFormat handle the "format" meta value.
func encodeFormat(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func decodeFormat(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) || n != uvarintLen(v) {
		return 0, fmt.Errorf("%w: format version value %x", ErrCorrupt, b)
	}
	return v, nil
}
